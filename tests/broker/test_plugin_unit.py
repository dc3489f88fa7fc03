"""The plugin's C unit checks (`make -C broker check`): parsing, lookups, reloads and cleanup
against stand-ins for the broker, built with AddressSanitizer so that a leak fails the run."""

from __future__ import annotations

import subprocess

import pytest

from bridge.broker import BROKER_SRC_DIR

pytestmark = pytest.mark.broker


def test_plugin_unit_checks_pass_without_leaks():
    result = subprocess.run(
        ["make", "-s", "-C", str(BROKER_SRC_DIR), "check"],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    assert "all checks passed" in result.stdout
