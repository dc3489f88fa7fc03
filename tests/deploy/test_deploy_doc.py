"""docs/deploy.md lists every environment variable the settings read, and no other."""

from __future__ import annotations

import re

from django.conf import settings

from mchat import local_state

READERS = re.compile(r'(?:environ\.get|_env_bool|environ\[)\(?\s*"([A-Z][A-Z0-9_]+)"')
DOCUMENTED = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \|", re.MULTILINE)


def variables_read() -> set[str]:
    sources = [settings.BASE_DIR / "mchat" / "settings.py", settings.BASE_DIR / "mchat" / "gunicorn_conf.py"]
    names = {name for path in sources for name in READERS.findall(path.read_text())}
    return names | set(local_state.SECRET_FILES)


def test_every_variable_the_settings_read_is_documented():
    read = variables_read()
    documented = set(DOCUMENTED.findall((settings.BASE_DIR / "docs" / "deploy.md").read_text()))
    assert {"DATABASE_URL", "MCHAT_TLS_CERT", "DJANGO_SECRET_KEY", "MCHAT_FILE_ALLOWED_TYPES"} <= read
    assert sorted(read - documented) == [], "read by settings but missing from docs/deploy.md"
    assert sorted(documented - read) == [], "in docs/deploy.md but read by no setting"
