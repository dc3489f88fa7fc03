"""Answers that come later, as the bridge carries them.

A handler whose answer waits (msg.send_private to an AI agent: messaging.agent_waits) returns
`Deferred()`; the dispatcher publishes nothing then, and whoever resolves the wait publishes the
answer through mchat.outbox. A repeat of the request meanwhile gets what the wait says
(bridge.dispatch asks messaging.agent_waits.agent_ack_answers).

The wait's deadline sweep and its purge are periodic jobs of every bridge process
(MCHAT_BRIDGE_PERIODIC names them here).
"""

from __future__ import annotations

from messaging.agent_waits import agent_ack_waits_expire_due, agent_ack_waits_purge

expire_due = agent_ack_waits_expire_due
resolved_waits_purge = agent_ack_waits_purge


class Deferred:
    """Returned by a handler whose answer is published later by whoever resolves it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Deferred()"
