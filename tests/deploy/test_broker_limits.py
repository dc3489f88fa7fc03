"""The broker's connection limits in the generated config (bench/CAPACITY.md): every listener
has max_connections, and the open-files limit the broker inherits is raised as far as allowed."""

import resource

from bench.services import free_port
from bridge.broker import FD_RESERVE, max_connections_for, open_files_limit_raise, render_config


def _listener_limits(text: str) -> dict[str, str]:
    limits, listener = {}, None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "listener":
            listener = value
        elif key == "max_connections":
            limits[listener] = value
    return limits


def test_every_listener_gets_max_connections(tmp_path):
    port, ws_port = free_port(), free_port()
    conf = render_config(port=port, ws_port=ws_port, directory=tmp_path, max_connections=1234)
    assert _listener_limits(conf.read_text()) == {
        f"{port} 127.0.0.1": "1234",
        f"{ws_port} 127.0.0.1": "1234",
    }
    unlimited = render_config(port=port, directory=tmp_path / "b")
    assert _listener_limits(unlimited.read_text()) == {f"{port} 127.0.0.1": "-1"}


def test_open_files_limit_is_raised_as_far_as_allowed():
    soft_before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        soft = open_files_limit_raise(soft_before + 1)
        assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert soft >= min(soft_before + 1, hard)  # the hard limit caps it unless it may be raised
    finally:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (soft_before, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        )
    assert max_connections_for(20_000) == 20_000 - FD_RESERVE
    assert max_connections_for(10) == 1
