"""What every browser test shares: Debian's Chromium as Playwright drives it on this machine
(no browser download; the flags keep it off the closed network), and where the screenshots a
person can look at are kept: var/test-artifacts/ (MCHAT_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_DIR = Path(os.environ.get("MCHAT_TEST_ARTIFACTS", settings.BASE_DIR / "var" / "test-artifacts"))
