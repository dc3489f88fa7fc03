"""Start the test provider (tests/oidc_provider/serve.py) for one test or module:

    with running_provider([f"{base}/oidc/callback/", f"{base}/login/sso/callback/"], PERSON, tmp) as url:
        ...  # url = "http://127.0.0.1:PORT"; configure MChat with provider_settings(url)

One person signs in there (PERSON: username, password, email); MChat is one confidential
client (CLIENT_ID / CLIENT_SECRET) allowed the given redirect URIs. Stopped by its PID.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.broker import REPO_DIR

CLIENT_ID = "mchat-console"
CLIENT_SECRET = "mchat-console-secret-for-tests"


@contextmanager
def running_provider(redirect_uris: list[str], person: dict, workdir: Path) -> Iterator[str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    env = {
        **os.environ,
        "OIDC_PROVIDER_DB": str(workdir / "provider.sqlite3"),
        "OIDC_PROVIDER_RSA_KEY": key.decode(),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.oidc_provider.serve",
            " ".join(redirect_uris),  # django-oauth-toolkit: space-separated
            CLIENT_ID,
            CLIENT_SECRET,
            person["username"],
            person["password"],
            person["email"],
        ],
        cwd=REPO_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        output: list[str] = []
        while not output or not output[-1].startswith("ready "):
            if not selector.select(timeout=60) or process.poll() is not None:
                raise RuntimeError(f"OIDC provider did not start: {''.join(output)}{process.stdout.read()}")
            output.append(process.stdout.readline())
        yield f"http://127.0.0.1:{int(output[-1].split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def provider_settings(settings, url: str) -> None:
    """MChat's settings for this provider (what the MCHAT_OIDC_* variables give)."""
    settings.MCHAT_OIDC = True
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{url}/o/authorize/"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{url}/o/token/"
    settings.OIDC_OP_USER_ENDPOINT = f"{url}/o/userinfo/"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{url}/o/.well-known/jwks.json"
