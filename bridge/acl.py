"""Broker credentials and ACL rendered from the database (DESIGN §2-3).

Three files in MCHAT_BROKER_DIR: `passwd` (Mosquitto $7$ lines for the bridge and every active
employee), `acl` (static patterns) and `groups` (one "group_id employee_id" line per current
membership, which the mchat_auth plugin watches and answers group ACL from). Files are written
atomically and only when changed; the broker is sent SIGHUP when passwd or acl changed. Live
sessions of a revoked credential are disconnected at that reload through the `kick` file.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from bridge.broker import password_line, reload_broker, request_kick, write_atomically
from org.credentials import hash_password, verify_password

logger = logging.getLogger("mchat.bridge.acl")

ACL_TEXT = """\
# Rendered by MChat (bridge/acl.py); edits are overwritten. DESIGN.md section 3.
user {bridge_user}
topic readwrite #

pattern write mchat/msg/req/%c/#
pattern read mchat/msg/resp/%c/#
pattern read mchat/inbox/%u
pattern write mchat/status/%u
pattern read mchat/status/+
pattern read mchat/profile/+
pattern read mchat/system/notify
"""
# Group topics (mchat/group/{id}) are answered by the plugin from the `groups` file.


@dataclass(frozen=True)
class SyncResult:
    changed: tuple[str, ...]
    reloaded: bool


def _bridge_password_line(current_passwd: Path) -> str:
    """The bridge's own login; an existing line that still verifies is kept as it is, so a
    render with no change rewrites nothing and reloads nothing."""
    user, password = settings.MCHAT_BRIDGE_USERNAME, settings.MCHAT_BRIDGE_PASSWORD
    try:
        first = current_passwd.read_text().split("\n", 1)[0]
    except FileNotFoundError:
        first = ""
    name, _, hashed = first.partition(":")
    if name == user and verify_password(password, hashed):
        return first
    return password_line(user, hash_password(password))


def render_passwd(current_passwd: Path) -> str:
    from org.models import Employee

    lines = [_bridge_password_line(current_passwd)]
    rows = Employee.objects.filter(is_active=True).order_by("employee_id")
    lines += [f"{eid}:{hashed}" for eid, hashed in rows.values_list("employee_id", "mqtt_password_hash")]
    return "\n".join(lines) + "\n"


def render_acl() -> str:
    return ACL_TEXT.format(bridge_user=settings.MCHAT_BRIDGE_USERNAME)


def render_groups() -> str:
    from messaging.selectors import group_memberships_for_broker

    return "".join(f"{gid} {eid}\n" for gid, eid in group_memberships_for_broker())


FILES = ("passwd", "acl", "groups")


def sync(directory: Path | None = None, *, files: tuple[str, ...] = FILES) -> SyncResult:
    """Render the files (all three by default); reload the broker if passwd or acl changed.
    Serialised across processes."""
    directory = Path(directory or settings.MCHAT_BROKER_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".sync.lock", "w") as lock:
        # The database is read under the lock, so the last writer always saw the latest commit.
        fcntl.flock(lock, fcntl.LOCK_EX)
        renderers = {
            "passwd": lambda: render_passwd(directory / "passwd"),
            "acl": render_acl,
            "groups": render_groups,
        }
        rendered = {name: renderers[name]() for name in files}
        changed = []
        for name, text in rendered.items():
            path = directory / name
            if not path.exists() or path.read_text() != text:
                write_atomically(path, text)
                changed.append(name)
        # The plugin picks up a new groups file by itself (it watches it); a SIGHUP makes
        # Mosquitto re-check every live session's password, so send one only when needed.
        needs_reload = any(name in changed for name in ("passwd", "acl"))
        reloaded = needs_reload and reload_broker(directory / "mosquitto.pid")
    if changed:
        logger.info("broker files changed: %s; reloaded=%s", ", ".join(changed), reloaded)
    return SyncResult(tuple(changed), reloaded)


def kick_on_next_sync(employee_ids: list[str], directory: Path | None = None) -> None:
    """The live sessions of these employees are disconnected at the broker's next reload.

    For credential resets and deactivations: the mchat_auth plugin lets every existing
    session pass the reload's re-check (Mosquitto 2.0.11 crashes when that re-check drops an
    offline persistent session), so revocation of live ones is asked for by name.
    """
    directory = Path(directory or settings.MCHAT_BROKER_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".sync.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        request_kick(directory / "kick", employee_ids)


class _Debouncer:
    """Coalesces the sync requests of a burst of commits into one render."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._syncing = threading.Lock()  # held while a debounced sync runs

    def request(self) -> None:
        delay = settings.MCHAT_BROKER_SYNC_DEBOUNCE
        if delay <= 0:
            sync()
            return
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(delay, self._run)
                self._timer.daemon = True
                self._timer.start()

    def _run(self) -> None:
        with self._syncing:
            with self._lock:
                self._timer = None
            try:
                sync()
            except Exception:
                logger.exception("broker file sync failed")
            finally:
                connection.close()

    def flush(self) -> None:
        """Run a pending sync now, or wait for the one running: a short-lived process
        (manage.py createemployee, a shell) exits before its timer fires, and the broker
        would never learn of its change."""
        with self._syncing:
            with self._lock:
                timer, self._timer = self._timer, None
            if timer is None:
                return
            timer.cancel()
            try:
                sync()
            except Exception:
                logger.exception("broker file sync failed")


_debouncer = _Debouncer()
atexit.register(_debouncer.flush)


def request_sync() -> None:
    _debouncer.request()


class BrokerFiles:
    """The broker-policy port (mchat.broker_policy) as Mosquitto's files and plugin take it."""

    def request_sync(self) -> None:
        request_sync()

    def sync_memberships(self) -> None:
        # The mchat_auth plugin reads the groups file before every group delivery.
        sync(files=("groups",))

    def revoke(self, employee_ids: list[str]) -> None:
        kick_on_next_sync(employee_ids)
