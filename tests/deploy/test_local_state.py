"""The embedded default's secrets: made by runstack (mchat.local_state.ensure), never by
importing settings; the environment wins; an existing file is kept."""

from __future__ import annotations

import stat

from mchat import local_state


def test_ensure_creates_folders_and_private_secrets_once(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    monkeypatch.delenv("MCHAT_BRIDGE_PASSWORD", raising=False)
    var = tmp_path / "var"
    first = local_state.ensure(var, [var / "broker", var / "files"])
    assert (var / "broker").is_dir() and (var / "files").is_dir()
    for variable, name in local_state.SECRET_FILES.items():
        path = var / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == first[variable] and len(first[variable]) >= 40
        assert local_state.secret(var, variable) == first[variable]
    assert local_state.ensure(var, []) == first  # kept across restarts


def test_the_environment_wins_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_SECRET_KEY", "from-the-environment")
    monkeypatch.delenv("MCHAT_BRIDGE_PASSWORD", raising=False)
    assert local_state.secret(tmp_path, "DJANGO_SECRET_KEY") == "from-the-environment"
    made_up = local_state.secret(tmp_path, "MCHAT_BRIDGE_PASSWORD")
    assert made_up != local_state.secret(tmp_path, "MCHAT_BRIDGE_PASSWORD")  # per call, per process
    assert list(tmp_path.iterdir()) == []
    values = local_state.ensure(tmp_path, [])
    assert values["DJANGO_SECRET_KEY"] == "from-the-environment"
    assert [p.name for p in tmp_path.iterdir()] == ["bridge-password"]
