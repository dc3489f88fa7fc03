"""The Mosquitto broker as MChat runs it: config, credentials, plugin build, process control.

No Django here: `make up`, the test harness and the bridge's ACL writer all use these pieces.
A broker directory holds everything one broker needs (see `BrokerPaths`); `render_config`
creates it. The Django side rewrites `passwd`, `acl` and `groups` with `write_atomically`:

- `groups` is watched by the plugin: a replaced file applies within about 0.1 s, no signal.
- `passwd` and `acl` need `reload_broker` (SIGHUP). On that reload Mosquitto disconnects the
  live sessions of users removed from `passwd` or whose password changed, and re-verifies the
  password of every live session (about 0.1 ms each at 101 PBKDF2 iterations), so a SIGHUP
  stalls the broker in proportion to the number of connected clients: send it only when
  `passwd` or `acl` changed. The plugin also disconnects the users listed in `kick`.
"""

from __future__ import annotations

import fcntl
import os
import re
import resource
import signal
import socket
import ssl
import string
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from org.web_tokens import REVOKED_FILE as WEB_REVOKED_FILE
from org.web_tokens import SECRET_FILE as WEB_SECRET_FILE
from org.web_tokens import web_secret_ensure

REPO_DIR = Path(__file__).resolve().parent.parent
BROKER_SRC_DIR = REPO_DIR / "broker"
PLUGIN_SOURCE = BROKER_SRC_DIR / "mchat_auth.c"
PLUGIN_PATH = BROKER_SRC_DIR / "build" / "mchat_auth.so"
CONFIG_TEMPLATE = BROKER_SRC_DIR / "mosquitto.conf.template"

DEFAULT_BRIDGE_USER = "mchat-bridge"
START_TIMEOUT = 10.0
# Descriptors a broker keeps for itself beside its connections: listeners, log, persistence
# file, the plugin's files. max_connections stays this far below the open-files limit, so a
# full broker refuses a newcomer instead of failing to open its own files.
FD_RESERVE = 1000
OPEN_FILES_WANTED = 262_144  # room for 50,000+ connections per listener with margin


def open_files_limit_raise(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise this process's open-files limit, which the broker (and every child) inherits:
    the soft limit to `wanted` where the hard limit allows (as root, the hard limit too, up to
    the kernel's fs.nr_open), else to the hard limit. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))  # root only
            return wanted
        except (ValueError, OSError):
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def max_connections_for(open_files: int) -> int:
    """The `max_connections` of each listener for a broker with this open-files limit."""
    return max(1, open_files - FD_RESERVE)


@dataclass(frozen=True)
class BrokerPaths:
    """The files of one broker directory."""

    directory: Path

    @property
    def conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def passwd(self) -> Path:
        return self.directory / "passwd"

    @property
    def acl(self) -> Path:
        return self.directory / "acl"

    @property
    def groups(self) -> Path:
        """`{group_id} {employee_id}` per line; the plugin re-reads it when it is replaced."""
        return self.directory / "groups"

    @property
    def kick(self) -> Path:
        """Usernames whose live sessions the plugin disconnects at the next reload."""
        return self.directory / "kick"

    @property
    def web_secret(self) -> Path:
        """The key web tokens are signed with (org.web_tokens); created once, mode 600."""
        return self.directory / WEB_SECRET_FILE

    @property
    def web_revoked(self) -> Path:
        """Web sessions that ended: `{sid} {until} {client_id}...` per line; watched by the plugin."""
        return self.directory / WEB_REVOKED_FILE

    @property
    def pid(self) -> Path:
        return self.directory / "mosquitto.pid"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"


class TlsConfigError(ValueError):
    """A certificate, key or CA file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate (chain) and private key, PEM; `ca` is the CA that clients
    (the bridge) verify the certificate against, when it is not a public one."""

    cert: Path
    key: Path
    ca: Path | None = None

    def check(self) -> None:
        """Raise TlsConfigError naming the file unless cert and key are readable PEM files
        that belong together (and the CA, if given, is a readable certificate)."""
        for variable, path in (
            ("MCHAT_TLS_CERT", self.cert),
            ("MCHAT_TLS_KEY", self.key),
            ("MCHAT_TLS_CA", self.ca),
        ):
            if path is None:
                continue
            if any(ch.isspace() for ch in str(path)):
                raise TlsConfigError(
                    f"{variable}: the path {path} contains whitespace (Mosquitto cannot read it)"
                )
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as exc:
                raise TlsConfigError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise TlsConfigError(
                f"MCHAT_TLS_CERT / MCHAT_TLS_KEY: {self.cert} and {self.key} are not a PEM certificate "
                f"and its private key ({exc})"
            ) from None
        if self.ca is not None:
            try:
                ssl.create_default_context(cafile=str(self.ca))
            except (ssl.SSLError, OSError) as exc:
                raise TlsConfigError(f"MCHAT_TLS_CA: {self.ca} is not a PEM CA certificate ({exc})") from None


def tls_options(tls: TlsFiles) -> str:
    """The lines that make the listener above them speak TLS: MQTT over TLS, or, placed after
    a `protocol websockets` listener, WebSockets over TLS (WSS)."""
    return f"certfile {Path(tls.cert).resolve()}\nkeyfile {Path(tls.key).resolve()}\ntls_version tlsv1.2\n"


def render_config(
    *,
    port: int,
    bind_address: str = "127.0.0.1",
    directory: Path,
    bridge_user: str = DEFAULT_BRIDGE_USER,
    ws_port: int | None = None,
    tls: TlsFiles | None = None,
    tls_port: int = 8883,
    max_connections: int = -1,
) -> Path:
    """Write `mosquitto.conf` for a broker whose files all live in `directory`.

    Creates the directory, `data/`, empty passwd/acl/groups files and the web token key when
    missing (existing ones are kept). `ws_port` adds a WebSockets listener on the same
    address. With `tls`, a second listener on `tls_port` speaks MQTT over TLS (the same
    plugin, passwords and ACL) and the WebSockets listener becomes WSS. Returns the path of
    the config file. `max_connections` caps each listener (-1: no cap but the open-files
    limit; see max_connections_for).
    """
    paths = BrokerPaths(Path(directory).resolve())
    tls_listener = ""
    if tls is not None:
        tls.check()
        limit = f"max_connections {int(max_connections)}\n"
        tls_listener = f"listener {int(tls_port)} {bind_address}\n{tls_options(tls)}{limit}"
    # Mosquitto splits config values at whitespace.
    for value in (str(paths.directory), str(PLUGIN_PATH), bind_address, bridge_user):
        if not value or any(ch.isspace() for ch in value):
            raise ValueError(f"broker config value must be non-empty without whitespace: {value!r}")
    paths.data.mkdir(parents=True, exist_ok=True)
    for path in (paths.passwd, paths.acl, paths.groups):
        if not path.exists():
            write_atomically(path, "")
    web_secret_ensure(paths.web_secret)
    websockets = (
        f"listener {int(ws_port)} {bind_address}\nprotocol websockets\n{tls_options(tls) if tls else ''}"
        f"max_connections {int(max_connections)}\n"
        if ws_port
        else "# (no WebSockets listener configured)"
    )
    text = string.Template(CONFIG_TEMPLATE.read_text()).substitute(
        port=int(port),
        bind_address=bind_address,
        plugin_path=PLUGIN_PATH,
        password_file=paths.passwd,
        acl_file=paths.acl,
        group_file=paths.groups,
        kick_file=paths.kick,
        web_secret_file=paths.web_secret,
        web_revoked_file=paths.web_revoked,
        websockets_listener=websockets,
        pid_file=paths.pid,
        persistence_dir=f"{paths.data}/",
        log_file=paths.log,
        bridge_user=bridge_user,
        tls_listener=tls_listener,
        max_connections=int(max_connections),
    )
    write_atomically(paths.conf, text)
    return paths.conf


def build_plugin() -> Path:
    """Build the plugin with `make -C broker` unless the .so is newer than its source."""
    PLUGIN_PATH.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may all get here at once: one builds, the others wait.
    with open(PLUGIN_PATH.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if PLUGIN_PATH.exists() and PLUGIN_PATH.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
            return PLUGIN_PATH
        result = subprocess.run(
            ["make", "-C", str(BROKER_SRC_DIR)],
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    if result.returncode != 0:
        raise RuntimeError(f"building the Mosquitto plugin failed:\n{result.stdout}")
    return PLUGIN_PATH


# --- credentials ------------------------------------------------------------------------------


def password_line(username: str, hash: str) -> str:
    """One `password_file` line, without the newline."""
    if not username or any(ch in username for ch in ":\r\n") or any(ch in hash for ch in "\r\n"):
        raise ValueError(f"invalid password_file entry for {username!r}")
    return f"{username}:{hash}"


# --- files and signals ------------------------------------------------------------------------


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new file, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def request_kick(kick_file: Path, usernames: Iterable[str]) -> None:
    """Ask the plugin to disconnect these users' live sessions at the next reload.

    Merges with names already waiting; the plugin deletes the file once it has read it.
    (Mosquitto itself already disconnects, on reload, users removed from the password file
    or whose password changed.)
    """
    kick_file = Path(kick_file)
    try:
        waiting = kick_file.read_text().split()
    except FileNotFoundError:
        waiting = []
    names = dict.fromkeys(waiting)
    for name in usernames:
        if not name or any(ch.isspace() for ch in name):
            raise ValueError(f"invalid username {name!r}")
        names[name] = None
    write_atomically(kick_file, "".join(f"{name}\n" for name in names))


def _is_mosquitto(pid: int) -> bool:
    """False if `pid` is known to be some other program (a stale pid file, pid reused)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "mosquitto"
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs: cannot tell, trust the pid file


def reload_broker(pid_file: Path) -> bool:
    """SIGHUP the broker named by `pid_file`: it re-reads passwd, acl and groups.

    Returns False, without raising, if the pid file is missing or the broker is gone.
    """
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    if pid <= 0 or not _is_mosquitto(pid):
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True


# --- the broker process -----------------------------------------------------------------------

_RUNNING = re.compile(r"mosquitto version \S+ running")


class MosquittoProcess:
    """A `mosquitto -c CONF` child process.

    The port and log file are read from the config (`listener`, `log_dest file`) unless
    given. Usable as a context manager: starts on enter, stops on exit.
    """

    def __init__(
        self,
        conf: Path,
        *,
        port: int | None = None,
        host: str | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.conf = Path(conf)
        settings = _read_settings(self.conf)
        listener = settings.get("listener", "").split()
        self.port = int(port if port is not None else listener[0])
        self.host = host or (listener[1] if len(listener) > 1 else "127.0.0.1")
        self.ws_port = _websockets_port(self.conf)
        log_dest = settings.get("log_dest", "").split(maxsplit=1)
        if log_file is None and len(log_dest) == 2 and log_dest[0] == "file":
            log_file = Path(log_dest[1])
        self.log_file = Path(log_file) if log_file else self.conf.with_suffix(".out")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker; return once it accepts connections (or raise RuntimeError)."""
        if self.is_running():
            raise RuntimeError(f"mosquitto already running (pid {self.pid})")
        offset = self._log_size()
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                ["mosquitto", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for the test run does not hit it first
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            # "running" is logged once every listener is bound, so a port answered by some
            # other process cannot be mistaken for ours.
            if _RUNNING.search(self._log_since(offset)) and self._port_open():
                return
            time.sleep(0.01)
        failure = self._log_since(offset)[-2000:]
        self.stop()
        raise RuntimeError(f"mosquitto did not start on {self.host}:{self.port}:\n{failure}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by pid, wait, SIGKILL if it does not exit."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


def _websockets_port(conf: Path) -> int | None:
    """The port of the first listener whose protocol is websockets, if any."""
    port = None
    for line in conf.read_text().splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "listener":
            port = int(value.split()[0])
        elif key == "protocol" and value.strip() == "websockets" and port is not None:
            return port
    return None


def _read_settings(conf: Path) -> dict[str, str]:
    """The first value of each option in a Mosquitto config file."""
    settings: dict[str, str] = {}
    for line in conf.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        settings.setdefault(key, value.strip())
    return settings
