"""REST tokens (rest_framework.authtoken) are audited when they are created or revoked, by
whatever path: the console's token page, DRF's `manage.py drf_create_token [--reset]`, a
`Token.objects.create` / `.delete()` in `manage.py shell` or a script, a user's deletion
taking its token with it.

Signal receivers, although MChat's own models have no side effects in signals: the token is
DRF's model and most of those paths are not MChat's code, so its signals are the one place
every path passes. A revocation is recorded on pre_delete, inside the deletion's own
transaction (Django deletes in one); a creation on post_save, inside the caller's transaction
when there is one (the console's, get_or_create's), right after the insert otherwise.
The source is the entry point's (console request, manage.py's `command`, audit.context).
`bulk_create` and raw SQL send no signal and are not seen; MChat uses neither on tokens.
"""

from __future__ import annotations

from django.db.models.signals import post_save, pre_delete
from rest_framework.authtoken.models import Token, TokenProxy

from audit.services import audit_record


def rest_token_created(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:  # raw: loaddata restoring a fixture, not a new credential
        audit_record(action="rest_token_create", actor=None, target=instance)


def rest_token_revoked(sender, instance, **kwargs) -> None:
    audit_record(action="rest_token_revoke", actor=None, target=instance)


def connect() -> None:
    # The console's token page saves and deletes through the proxy model: signals name it.
    for model in (Token, TokenProxy):
        post_save.connect(rest_token_created, sender=model, dispatch_uid=f"audit.{model.__name__}.create")
        pre_delete.connect(rest_token_revoked, sender=model, dispatch_uid=f"audit.{model.__name__}.revoke")
