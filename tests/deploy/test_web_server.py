"""The web process as deployed: gunicorn serving pages with security headers, hashed static
files with long caching and compression, `/healthz`; `check --deploy` clean in production."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest
from django.conf import settings

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _get(url: str, **headers: str):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_pages_and_static_files_from_gunicorn(web_server, admin_user):
    status, headers, body = _get(f"{web_server.url}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}

    for path in ("/admin/login/", "/api/docs/", "/api/redoc/", "/api/schema/", "/api/v1/employees/"):
        status, headers, body = _get(f"{web_server.url}{path}")
        assert status in (200, 401, 403), (path, status)
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value, (path, name)
        assert headers["X-Frame-Options"] == "DENY", path

    # The login page names hashed files; each is served compressed and cached for good.
    _, _, login = _get(f"{web_server.url}/admin/login/")
    stylesheet = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login).group(1).decode()
    status, headers, _ = _get(f"{web_server.url}{stylesheet}", **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"] and "max-age=315360000" in headers["Cache-Control"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, _ = _get(
        f"{web_server.url}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    )
    assert status == 200


def _check_deploy(**env: str) -> str:
    secrets = {
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "MCHAT_BRIDGE_PASSWORD": settings.MCHAT_BRIDGE_PASSWORD,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=settings.BASE_DIR,
        env={**os.environ, **secrets, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def test_check_deploy_is_clean_for_production_and_documents_the_embedded_default():
    assert "no issues" in _check_deploy(MCHAT_HTTPS="1", DJANGO_ALLOWED_HOSTS="chat.example.com")
    # Plain HTTP on loopback (make up): exactly the HTTPS-only settings, as the README says.
    embedded = _check_deploy()
    assert sorted(set(re.findall(r"security\.W\d+", embedded))) == [
        "security.W004",
        "security.W008",
        "security.W012",
        "security.W016",
    ]


def test_check_deploy_warns_about_secrets_each_process_would_make_up(tmp_path):
    # No variable and no var/ file (runstack writes them): every gunicorn worker would differ.
    output = _check_deploy(
        MCHAT_HTTPS="1", MCHAT_VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY="", MCHAT_BRIDGE_PASSWORD=""
    )
    assert output.count("mchat.W001") == 2
    assert "DJANGO_SECRET_KEY is not set" in output and "MCHAT_BRIDGE_PASSWORD is not set" in output
    assert list(tmp_path.iterdir()) == []  # importing settings wrote nothing


@pytest.mark.django_db
def test_https_mode_redirects_but_not_health_probes(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/healthz").status_code == 200
