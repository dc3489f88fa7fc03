"""What this process has seen of group sends, so a send by a member it has served before to
the same group costs no lookup (the known-groups strategy of messaging.services.messages)."""

from __future__ import annotations

from dataclasses import dataclass

from messaging.participants import Participant


@dataclass(frozen=True, slots=True)
class KnownGroupSend:
    """A sender (by employee_id) that this process let send to a group (by group_id): the
    group's conversation and the sender as it was then."""

    conversation_id: int
    sender: Participant


class KnownGroupSends:
    """This process's group sends served the usual way, by (sender employee_id, group_id).

    Nothing here is trusted: the known-groups statement checks all of it again (the sender
    still the active employee it was, still a member, the group not dismissed, the conversation
    the group's) and stores nothing if anything no longer holds; the entry is then forgotten.
    Bounded (a few MB when full): when full, it starts over.
    """

    MAX_SENDS = 50_000

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], KnownGroupSend] = {}

    def known(self, sender_id: str, group_id: str) -> KnownGroupSend | None:
        return self._known.get((sender_id, group_id))

    def remember(self, sender: Participant, group_id: str, conversation_id: int) -> None:
        key = (sender.employee_id, group_id)
        if key not in self._known and len(self._known) >= self.MAX_SENDS:
            self.clear()
        self._known[key] = KnownGroupSend(conversation_id, sender)

    def forget(self, sender_id: str, group_id: str) -> None:
        self._known.pop((sender_id, group_id), None)

    def clear(self) -> None:
        self._known.clear()


KNOWN_GROUP_SENDS = KnownGroupSends()


def known_group_sends_clear() -> None:
    """Forget the group sends this process has seen (tests: a rolled-back test's groups must
    not be taken for existing in the next one)."""
    KNOWN_GROUP_SENDS.clear()
