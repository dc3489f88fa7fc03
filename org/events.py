"""What org changes tell the outside world, always after commit."""

from django.db import transaction

from bridge import acl


def broker_credentials_changed() -> None:
    """Passwords, activation or membership changed: re-render the broker files after commit."""
    transaction.on_commit(acl.request_sync)
