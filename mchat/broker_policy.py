"""The broker-policy port: how the domain asks for the broker's credentials and ACL to follow
the database (DESIGN §2-3), without knowing how the broker is told.

The implementation is named by the setting MCHAT_BROKER_POLICY ("module:name", created on
first use); the project's renders Mosquitto's files (bridge.acl.BrokerFiles). Services call the
functions below inside their transaction; each acts after commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.db import transaction

from mchat.targets import Port


class BrokerPolicy(Protocol):
    def request_sync(self) -> None:
        """Credentials, activation or group memberships changed: apply soon (coalesced)."""

    def sync_memberships(self) -> None:
        """Group access was revoked: apply it now, before the caller's answer goes out."""

    def revoke(self, employee_ids: list[str]) -> None:
        """End these employees' live sessions when the broker next reloads its credentials."""


_port: Port[BrokerPolicy] = Port("MCHAT_BROKER_POLICY")
install = _port.install
current = _port.current


def access_changed() -> None:
    """Passwords, activation or group membership changed: the broker follows after commit."""
    transaction.on_commit(lambda: current().request_sync())


def group_access_revoked() -> None:
    """Members were removed or a group dismissed: the broker must stop delivering the group
    topic to them before the answer goes out (on-commit hooks run before it is published)."""
    # robust: the change has committed; a failure here is logged, it must not make the answer a 500.
    transaction.on_commit(lambda: current().sync_memberships(), robust=True)


def sessions_revoked(employee_ids: Iterable[str]) -> None:
    """A credential reset or a deactivation: live sessions end at the reload, which follows."""
    ids = list(employee_ids)
    transaction.on_commit(lambda: current().revoke(ids))
    access_changed()
