"""`web_stack`: the whole MChat for browser tests (docs: /work/wt/briefs/WEB-CONTRACT.md).

A real Mosquitto with TCP and WebSockets listeners and the mchat plugin (tests/live.py, one
per test session), a bridge thread, and the Django web server on a free loopback port in a
thread, serving the sign-in pages, the MQTT credential, the page shell and static files
(including the built client under /static/web/ when web/dist exists).

    @pytest.mark.broker
    def test_something(web_stack):
        alice = web_stack.make_employee(name="Alice", web_password="alice-password-1")
        page.goto(web_stack.base_url + "/login/")
        ...

`make_employee` returns an org.models.Employee whose web password is already chosen (no forced
change page); its long-lived MQTT password is in `web_stack.mqtt_passwords[employee_id]`.

With Playwright: create employees (any ORM work) before `sync_playwright()` starts, since its
sync API runs an event loop in the test thread, where Django refuses ORM calls. The pages run
under the real Content-Security-Policy, which also refuses Playwright's string-evaluating
helpers such as `page.wait_for_function("...")`: wait with locators instead.
tests/web/test_sign_in_browser.py is a small example.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

from org import services, web_auth
from org.models import Employee
from tests.live import LiveStack

DEFAULT_WEB_PASSWORD = "mchat-web-Passw0rd"


class _QuietRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class WebServer:
    """Django (with static files) on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self) -> None:
        self.httpd = ThreadedWSGIServer(("127.0.0.1", 0), _QuietRequestHandler, allow_reuse_address=False)
        self.httpd.set_app(StaticFilesHandler(WSGIHandler()))
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="web-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)


@dataclass
class WebStack:
    live: LiveStack
    base_url: str
    ws_url: str
    mqtt_passwords: dict[str, str] = field(default_factory=dict)

    def make_employee(
        self, name: str = "测试员工", web_password: str = DEFAULT_WEB_PASSWORD, **kw
    ) -> Employee:
        """A new employee (org.services.employee_create keywords: is_org_admin, department_id,
        email, ...) who can sign in on the web with `web_password` at once."""
        issued = services.employee_create(actor=None, name=name, **kw)
        web_auth.web_password_set(employee=issued.employee, password=web_password, must_change=False)
        self.mqtt_passwords[issued.employee.employee_id] = issued.password
        return issued.employee

    def sign_in(self, login: str, web_password: str = DEFAULT_WEB_PASSWORD) -> WebSession:
        """An HTTP client signed in as the employee (a browser without the page)."""
        http = requests.Session()
        http.get(f"{self.base_url}/login/", timeout=10).raise_for_status()
        response = http.post(
            f"{self.base_url}/login/",
            data={
                "login": login,
                "password": web_password,
                "csrfmiddlewaretoken": http.cookies["csrftoken"],
            },
            allow_redirects=False,
            timeout=10,
        )
        if response.status_code != 302:
            raise AssertionError(f"sign-in as {login} failed: {response.status_code}")
        return WebSession(self.base_url, http)


@dataclass
class WebSession:
    base_url: str
    http: requests.Session

    def credential(self, device: str | None = None) -> requests.Response:
        """POST /api/web/mqtt-credential as the page does."""
        return self.http.post(
            f"{self.base_url}/api/web/mqtt-credential",
            json={"device": device} if device else None,
            headers={"X-CSRFToken": self.http.cookies.get("csrftoken", "")},
            timeout=10,
        )

    def sign_out(self) -> requests.Response:
        return self.http.post(
            f"{self.base_url}/logout/",
            data={"csrfmiddlewaretoken": self.http.cookies.get("csrftoken", "")},
            allow_redirects=False,
            timeout=10,
        )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Django's default PBKDF2 costs most of a second per sign-in on a busy test machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def web_stack(live, settings):
    ws_port = live.broker.ws_port
    assert ws_port, "the test broker has no WebSockets listener"
    dist = Path(django_settings.MCHAT_WEB_DIST_DIR)
    if dist.is_dir():
        settings.STATICFILES_DIRS = [("web", dist)]
    # StaticFilesHandler serves the sources (finders), which have no content-hashed names:
    # pages must name them plainly, or the sign-in pages' stylesheet is a 404.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    server = WebServer()
    settings.MCHAT_PUBLIC_WS_URL = f"ws://127.0.0.1:{ws_port}"
    settings.MCHAT_PUBLIC_BASE_URL = server.base_url
    settings.MCHAT_CSP_STORAGE_ORIGINS = [server.base_url]
    server.start()
    yield WebStack(live=live, base_url=server.base_url, ws_url=settings.MCHAT_PUBLIC_WS_URL)
    server.stop()
