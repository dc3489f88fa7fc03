"""What this process has seen of private conversations, so a send between a known pair
costs no lookup (messaging.services.private_sends)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from messaging import selectors
from messaging.models import Conversation
from org.models import Employee


@dataclass(frozen=True, slots=True)
class KnownPair:
    """What this process has seen of a sender and a recipient (by employee_id)."""

    conversation_id: int
    sender_pk: int
    recipient_pk: int
    recipient_is_agent: bool


class PrivateConversationIds:
    """This process's private conversation ids by pair (selectors.private_key), and what it
    has seen of each pair by employee ids (KnownPair, for private_sends_known).

    A pair's conversation, once created, is never replaced, so a send to a pair seen before
    needs no lookup. Should one be deleted after all (its employees deleted in the admin), the
    store statement, which checks every conversation against its pair, fails as a whole and
    the batch's pairs are forgotten (private_sends_store, private_sends_known). Bounded (about
    30 MB when full): when full, it starts over.
    """

    MAX_PAIRS = 50_000

    def __init__(self) -> None:
        self._ids: dict[tuple[int, int], int] = {}
        self._known: dict[tuple[str, str], KnownPair] = {}

    def get(self, key: tuple[int, int]) -> int | None:
        return self._ids.get(key)

    def known(self, sender_id: str, recipient_id: str) -> KnownPair | None:
        return self._known.get((sender_id, recipient_id))

    def remember(
        self,
        conversations: Mapping[tuple[int, int], Conversation],
        pairs: Iterable[tuple[Employee, Employee]] = (),
    ) -> None:
        if len(self._ids) + len(conversations) > self.MAX_PAIRS or len(self._known) > 2 * self.MAX_PAIRS:
            self.clear()
        for key, conversation in conversations.items():
            self._ids[key] = conversation.pk
        for sender, recipient in pairs:  # and the other way round: the same conversation
            conversation_id = self._ids[selectors.private_key(sender, recipient)]
            for a, b in ((sender, recipient), (recipient, sender)):
                self._known[(a.employee_id, b.employee_id)] = KnownPair(
                    conversation_id, a.pk, b.pk, b.is_ai_agent
                )

    def forget(self, keys: Iterable[tuple[int, int]]) -> None:
        keys = set(keys)
        for key in keys:
            self._ids.pop(key, None)
        for by_ids, pair in list(self._known.items()):
            if selectors.private_key_of(pair.sender_pk, pair.recipient_pk) in keys:
                del self._known[by_ids]

    def forget_known(self, ids: Iterable[tuple[str, str]]) -> None:
        for key in ids:
            self._known.pop(key, None)

    def clear(self) -> None:
        self._ids.clear()
        self._known.clear()


PRIVATE_CONVERSATION_IDS = PrivateConversationIds()


def private_conversation_ids_clear() -> None:
    """Forget the private conversations this process has seen (tests: a rolled-back test's
    pairs must not be taken for existing in the next one)."""
    PRIVATE_CONVERSATION_IDS.clear()
