"""What org changes tell the outside world, always after commit."""

from django.db import transaction

from bridge import acl


def broker_credentials_changed() -> None:
    """Passwords, activation or membership changed: re-render the broker files after commit."""
    transaction.on_commit(acl.request_sync)


def credential_reset(employee_id: str) -> None:
    """A new password: the broker must also drop the sessions logged in with the old one."""
    transaction.on_commit(lambda: acl.kick_on_next_sync([employee_id]))
    transaction.on_commit(acl.request_sync)
