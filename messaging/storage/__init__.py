"""Object storage backends (DESIGN §1, §5): `local` (default) and `s3`, chosen by MCHAT_STORAGE.

Both answer the same questions for messaging.files: a URL to upload one object, a URL to
download one, whether an object is there (and how large), and, for config.storage, what a
client may use directly. Keys and upload rules live in messaging.storage.keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

BACKENDS = ("local", "s3")


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str | None


def current():
    """The configured backend (a new, cheap object: settings may change between tests)."""
    name = settings.MCHAT_STORAGE
    if name == "local":
        from messaging.storage.local import LocalBackend

        return LocalBackend()
    if name == "s3":
        from messaging.storage.s3 import S3Backend

        return S3Backend()
    raise ImproperlyConfigured(f"MCHAT_STORAGE must be one of {BACKENDS}, not {name!r}")
