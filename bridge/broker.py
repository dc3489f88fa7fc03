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
import signal
import socket
import string
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

REPO_DIR = Path(__file__).resolve().parent.parent
BROKER_SRC_DIR = REPO_DIR / "broker"
PLUGIN_SOURCE = BROKER_SRC_DIR / "mchat_auth.c"
PLUGIN_PATH = BROKER_SRC_DIR / "build" / "mchat_auth.so"
CONFIG_TEMPLATE = BROKER_SRC_DIR / "mosquitto.conf.template"

DEFAULT_BRIDGE_USER = "mchat-bridge"
START_TIMEOUT = 10.0


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
    def pid(self) -> Path:
        return self.directory / "mosquitto.pid"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"


def render_config(
    *,
    port: int,
    bind_address: str = "127.0.0.1",
    directory: Path,
    bridge_user: str = DEFAULT_BRIDGE_USER,
) -> Path:
    """Write `mosquitto.conf` for a broker whose files all live in `directory`.

    Creates the directory, `data/` and empty passwd/acl/groups files when missing (existing
    ones are kept). Returns the path of the config file.
    """
    paths = BrokerPaths(Path(directory).resolve())
    # Mosquitto splits config values at whitespace.
    for value in (str(paths.directory), str(PLUGIN_PATH), bind_address, bridge_user):
        if not value or any(ch.isspace() for ch in value):
            raise ValueError(f"broker config value must be non-empty without whitespace: {value!r}")
    paths.data.mkdir(parents=True, exist_ok=True)
    for path in (paths.passwd, paths.acl, paths.groups):
        if not path.exists():
            write_atomically(path, "")
    text = string.Template(CONFIG_TEMPLATE.read_text()).substitute(
        port=int(port),
        bind_address=bind_address,
        plugin_path=PLUGIN_PATH,
        password_file=paths.passwd,
        acl_file=paths.acl,
        group_file=paths.groups,
        kick_file=paths.kick,
        pid_file=paths.pid,
        persistence_dir=f"{paths.data}/",
        log_file=paths.log,
        bridge_user=bridge_user,
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the broker process -----------------------------------------------------------------------

_RUNNING = re.compile(r"mosquitto version \S+ running")

# MQTT 3.1.1 CONNECT without credentials, client id "mchat-reload-probe", clean session.
_PROBE_CONNECT = bytes([0x10, 30, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 10, 0, 18]) + b"mchat-reload-probe"


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

    def reload(self, *, wait: bool = True, timeout: float = 5.0) -> None:
        """SIGHUP. With `wait`, return only after the broker has applied the new files."""
        if not self.is_running():
            raise RuntimeError("mosquitto is not running")
        offset = self._log_size()
        self._proc.send_signal(signal.SIGHUP)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        again = time.monotonic() + 0.5
        while "Reloading config." not in self._log_since(offset):
            if time.monotonic() > deadline or not self.is_running():
                raise RuntimeError("mosquitto did not reload:\n" + self._log_since(offset)[-2000:])
            if time.monotonic() > again:
                # A SIGHUP that lands while an earlier one is being applied (another process's
                # sync) is lost: mosquitto clears its reload flag after reloading. Ask again.
                self._proc.send_signal(signal.SIGHUP)
                again = time.monotonic() + 0.5
            time.sleep(0.005)
        # The reload (re-read files, disconnect revoked users) runs within one pass of the
        # broker's loop; a connection opened after that pass began is served after it.
        self._round_trip(deadline - time.monotonic())

    def restart(self) -> None:
        self.stop()
        self.start()

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

    def _round_trip(self, timeout: float) -> None:
        """A CONNECT the broker refuses (no credentials): its CONNACK proves a loop pass."""
        with socket.create_connection((self.host, self.port), timeout=max(timeout, 0.1)) as s:
            s.sendall(_PROBE_CONNECT)
            if not s.recv(4):
                raise RuntimeError("mosquitto closed the probe connection without CONNACK")

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
