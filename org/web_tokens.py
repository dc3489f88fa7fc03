"""The web client's short-lived MQTT credentials (DESIGN §8), as the mchat_auth plugin checks them.

A token is the MQTT password of one browser connection:

    v1.{expiry}.{sid}.{mac}     mac = hex HMAC-SHA256(key, "v1\\n{username}\\n{client_id}\\n{expiry}\\n{sid}")

`expiry` is in Unix seconds, `sid` the id of the web session (sign-in) that asked for it, and
the key the contents of `web-secret` in the broker directory (written once, mode 600). So a
token is bound to one employee and one client id, expires in minutes, and the plugin verifies it
without a database. Sessions that ended are listed in `web-revoked` (`{sid} {until}
{client_id}...`), which the plugin watches: their tokens are refused and the listed
connections are disconnected.

No Django here: bridge/broker.py (which renders the broker config) uses these too.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

VERSION = "v1"
SECRET_FILE = "web-secret"
REVOKED_FILE = "web-revoked"
SID_PATTERN = re.compile(r"^[0-9a-f]{16,64}$")
# The device part of a web client id (DESIGN §8): web-<random hex>.
WEB_DEVICE_PATTERN = re.compile(r"^web-[0-9a-f]{8,32}$")


def web_secret_ensure(path: Path) -> bytes:
    """The signing key in `path`, created (random, mode 600) when missing.

    Created with O_EXCL, so processes racing to create it agree on one key.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
    key = path.read_text().strip().encode()
    if len(key) < 16:
        raise ValueError(f"web token key {path} is shorter than 16 bytes")
    return key


def new_sid() -> str:
    return secrets.token_hex(16)


def new_web_device() -> str:
    return f"web-{secrets.token_hex(6)}"


def _mac(key: bytes, username: str, client_id: str, expiry: int, sid: str) -> str:
    message = f"{VERSION}\n{username}\n{client_id}\n{expiry}\n{sid}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def token_sign(*, key: bytes, username: str, client_id: str, expiry: int, sid: str) -> str:
    if not SID_PATTERN.match(sid):
        raise ValueError("sid must be 16-64 lowercase hex characters")
    return f"{VERSION}.{int(expiry)}.{sid}.{_mac(key, username, client_id, int(expiry), sid)}"


def token_verify(*, key: bytes, token: str, username: str, client_id: str, now: float) -> str | None:
    """The token's sid if it is valid for this username and client id at `now`, else None.
    (The plugin's check, in Python: for tests and tools; the broker does not call this.)"""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not parts[1].isdigit() or not SID_PATTERN.match(parts[2]):
        return None
    expiry, sid, mac = int(parts[1]), parts[2], parts[3]
    if not hmac.compare_digest(mac, _mac(key, username, client_id, expiry, sid)) or expiry <= now:
        return None
    return sid


def render_revoked(entries: Iterable[tuple[str, int, Iterable[str]]]) -> str:
    """The `web-revoked` file: (sid, until, client_ids) per ended session."""
    lines = []
    for sid, until, client_ids in entries:
        if not SID_PATTERN.match(sid):
            raise ValueError(f"invalid sid {sid!r}")
        ids = [cid for cid in client_ids if cid and not any(ch.isspace() for ch in cid)]
        lines.append(" ".join([sid, str(int(until)), *ids]))
    return "".join(f"{line}\n" for line in lines)
