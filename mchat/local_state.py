"""What the embedded default keeps under var/ (MCHAT_VAR_DIR): its folders and two secrets.

Importing settings creates nothing: `manage.py runstack` (so `make up`) calls `ensure` before it
starts anything, and every process it starts then reads the same files. A process that finds
neither the environment variable nor the file gets a random secret of its own (tests, one-off
commands on a fresh checkout); a deployment sets the variables (docs/deploy.md).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core import checks

# Environment variable -> file under var/ that stands in for it.
SECRET_FILES = {
    "DJANGO_SECRET_KEY": "django-secret-key",
    "MCHAT_BRIDGE_PASSWORD": "bridge-password",
}
# Settings whose values these variables give.
SECRET_SETTINGS = {"DJANGO_SECRET_KEY": "SECRET_KEY", "MCHAT_BRIDGE_PASSWORD": "MCHAT_BRIDGE_PASSWORD"}

# Secrets this process made up because neither the variable nor the file existed.
process_only: set[str] = set()


def secret(var_dir: Path, variable: str) -> str:
    """The variable's value, else the file's, else a random value for this process only."""
    value = os.environ.get(variable)
    if value:
        return value
    try:
        value = (Path(var_dir) / SECRET_FILES[variable]).read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        return value
    process_only.add(variable)
    return secrets.token_urlsafe(48)


def ensure(var_dir: Path, folders: list[Path]) -> dict[str, str]:
    """Create var/, the given folders and the secret files that are missing (mode 600; an
    existing file is never replaced). Returns {variable: value} of the secrets now in effect."""
    var_dir = Path(var_dir)
    var_dir.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)
    values = {}
    for variable, name in SECRET_FILES.items():
        if os.environ.get(variable):
            values[variable] = os.environ[variable]
            continue
        path = var_dir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        values[variable] = path.read_text().strip()
    return values


def adopt(settings, values: dict[str, str]) -> None:
    """Make this process use the secrets `ensure` settled (its children read the files)."""
    for variable, value in values.items():
        setattr(settings, SECRET_SETTINGS[variable], value)
        process_only.discard(variable)


@checks.register(checks.Tags.security, deploy=True)
def secrets_are_shared(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A made-up secret differs in every process (every gunicorn worker): sessions, CSRF and
    signed URLs fail across them, and the bridge cannot log in."""
    return [
        checks.Warning(
            f"{variable} is not set and {SECRET_FILES[variable]} is not under MCHAT_VAR_DIR: "
            "this process made up its own value.",
            hint=f"Set {variable} in the environment of every process (docs/deploy.md).",
            id="mchat.W001",
        )
        for variable in sorted(process_only)
    ]
