"""Run the test provider: migrate its database, create one person and MChat's client, serve.

    OIDC_PROVIDER_DB=... OIDC_PROVIDER_RSA_KEY=... python -m tests.oidc_provider.serve \
        REDIRECT_URI CLIENT_ID CLIENT_SECRET USERNAME PASSWORD EMAIL

Listens on a free loopback port of its own choosing, prints "ready PORT" once it listens;
stops on SIGTERM.
"""

from __future__ import annotations

import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_provider.settings")


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main() -> None:
    redirect_uri, client_id, client_secret, username, password, email = sys.argv[1:7]
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    get_user_model().objects.create_user(username, email=email, password=password)
    Application.objects.create(
        name="MChat",
        client_id=client_id,
        client_secret=client_secret,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect_uri,
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    # Port 0: the kernel picks a free one, so no other process can take it meanwhile.
    server = make_server("127.0.0.1", 0, get_wsgi_application(), ThreadingServer, QuietHandler)
    print(f"ready {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
