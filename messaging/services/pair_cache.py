"""What this process has seen of private conversations, so a send between a known pair
costs no lookup (messaging.services.private_sends)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from messaging import selectors
from messaging.participants import Participant


@dataclass(frozen=True, slots=True)
class KnownPair:
    """What this process has seen of a sender and a recipient (by employee_id): their
    private conversation and the two as they were then."""

    conversation_id: int
    sender: Participant
    recipient: Participant


class PrivateConversationIds:
    """This process's private conversation ids by pair (selectors.private_key), and what it
    has seen of each pair by employee ids (KnownPair, for the known-pairs strategy of
    messaging.services.private_sends).

    A pair's conversation, once created, is never replaced, so a send to a pair seen before
    needs no lookup. Should one be deleted after all (its employees deleted in the admin), the
    store statement, which checks every conversation against its pair, fails as a whole and
    the batch's pairs are forgotten. Bounded (about 30 MB when full): when full, it starts over.
    """

    MAX_PAIRS = 50_000

    def __init__(self) -> None:
        self._ids: dict[tuple[int, int], int] = {}
        self._known: dict[tuple[str, str], KnownPair] = {}

    def get(self, key: tuple[int, int]) -> int | None:
        return self._ids.get(key)

    def known(self, sender_id: str, recipient_id: str) -> KnownPair | None:
        return self._known.get((sender_id, recipient_id))

    def remember(self, pairs: Iterable[tuple[int, Participant, Participant]]) -> None:
        """(conversation id, sender, recipient) of private conversations that exist."""
        pairs = list(pairs)
        if len(self._ids) + len(pairs) > self.MAX_PAIRS or len(self._known) > 2 * self.MAX_PAIRS:
            self.clear()
        for conversation_id, sender, recipient in pairs:
            self._ids[selectors.private_key_of(sender.pk, recipient.pk)] = conversation_id
            # and the other way round: the same conversation
            for a, b in ((sender, recipient), (recipient, sender)):
                self._known[(a.employee_id, b.employee_id)] = KnownPair(conversation_id, a, b)

    def forget(self, keys: Iterable[tuple[int, int]]) -> None:
        keys = set(keys)
        for key in keys:
            self._ids.pop(key, None)
        for by_ids, pair in list(self._known.items()):
            if selectors.private_key_of(pair.sender.pk, pair.recipient.pk) in keys:
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
