"""Where the current change comes from: set once by each entry point, read by audit_record.

Entry points (the bridge dispatcher, REST and console requests through AuditSourceMiddleware,
imports, management commands, periodic jobs) wrap their work in `source(...)`; services never
pass it along. A contextvar, so each thread (and each asyncio task) sees its own.

    with audit.context.source("mqtt", client_id=request.client_id, seq_id=request.seq_id):
        handler(request)

    @audit.context.source("command")
    def handle(self, *args, **options): ...
"""

from __future__ import annotations

import contextvars
from contextlib import ContextDecorator
from dataclasses import dataclass, replace
from typing import Any

KINDS = ("mqtt", "rest", "console", "web", "import", "command", "system")

# The web client's own HTTP pages (org/urls_web.py: sign-in, SSO, password, sign-out, the MQTT
# credential and the sign-in sessions); a change made there is the employee's, from the web.
WEB_PATHS = ("/login/", "/password/", "/logout/", "/api/web/")

# operator_id of deliveries caused from the console by a user who is not an employee
# (docs/protocol.md, "Audit log"): the system acted, on a staff user's order.
SYSTEM_OPERATOR_ID = "system"


@dataclass(frozen=True)
class Source:
    kind: str
    client_id: str = ""
    seq_id: str = ""
    # REST: the token owner; console: the signed-in user (a django.contrib.auth user or None).
    user: Any = None
    address: str = ""

    @property
    def user_name(self) -> str:
        user = self.user
        if user is None or not getattr(user, "is_authenticated", False):
            return ""
        return user.get_username()


_current: contextvars.ContextVar[Source | None] = contextvars.ContextVar("audit_source", default=None)

# The source of a change no entry point claimed: the system's, or in a process manage.py started
# the command's (manage.py sets it), so that a change made by a command MChat does not own
# (DRF's drf_create_token) or typed in `manage.py shell` is audited as `command`. Entry points
# inside a long-running command (a bridge request, a scheduled job) still set their own.
_process_default = "system"


def process_default(kind: str) -> None:
    """Set this process's fallback source (manage.py: "command")."""
    global _process_default
    if kind not in KINDS:
        raise ValueError(f"unknown audit source {kind!r}")
    _process_default = kind


def current() -> Source:
    """The source of the change being made; the process's default (`system`, or `command`
    under manage.py) when no entry point said otherwise."""
    return _current.get() or Source(_process_default)


def is_set() -> bool:
    return _current.get() is not None


class source(ContextDecorator):
    """Set the source for the block (or the decorated function). Fields not given are kept
    from an enclosing source, so `source("import")` inside a console request keeps the user
    and the address."""

    def __init__(self, kind: str, **fields: Any):
        if kind not in KINDS:
            raise ValueError(f"unknown audit source {kind!r}")
        self.kind, self.fields = kind, fields
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> Source:
        outer = _current.get()
        value = replace(outer, kind=self.kind, **self.fields) if outer else Source(self.kind, **self.fields)
        self._tokens.append(_current.set(value))
        return value

    def __exit__(self, *exc_info) -> None:
        _current.reset(self._tokens.pop())


def set_seq_id(seq_id: str) -> None:
    """The bridge serves several requests under one source: name the one in hand."""
    outer = _current.get()
    if outer is not None:
        _current.set(replace(outer, seq_id=seq_id))


def client_address(request) -> str:
    """The peer's address as the web server saw it (REMOTE_ADDR; a proxy in front rewrites it)."""
    return (request.META.get("REMOTE_ADDR") or "")[:64]


class AuditSourceMiddleware:
    """REST (`/api/`), web client (WEB_PATHS) and console requests: the source with the
    request's user and address.

    The user is read when a row is written, not here: DRF authenticates tokens inside the
    view and sets the user on the Django request then.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        kind = request_kind(request.path)
        token = _current.set(_RequestSource(kind, request=request, address=client_address(request)))
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


def request_kind(path: str) -> str:
    """The audit source of an HTTP request to `path`."""
    if path.startswith(WEB_PATHS):
        return "web"
    return "rest" if path.startswith("/api/") else "console"


@dataclass(frozen=True)
class _RequestSource(Source):
    request: Any = None

    @property
    def user_name(self) -> str:
        user = getattr(self.request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return ""
        return user.get_username()

    @property
    def request_user(self) -> Any:
        return getattr(self.request, "user", None)


def user_of(value: Source) -> Any:
    """The signed-in Django user behind a source, if any."""
    if isinstance(value, _RequestSource):
        return value.request_user
    return value.user


def operator_employee(value: Source | None = None) -> Any:
    """The employee a console or REST user acts as (Employee.console_user links them, set in
    the console's employee form), else None."""
    user = user_of(value or current())
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return getattr(user, "mchat_employee", None)
