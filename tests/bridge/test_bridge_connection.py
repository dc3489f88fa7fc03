"""The bridge process keeps its database connection (runbridge.keep_database_connections):
the periodic close_old_connections no longer replaces it, a broken one still is."""

from __future__ import annotations

import pytest
from django.db import close_old_connections, connection

from bridge.management.commands.runbridge import persistent


def test_persistent_settings_unless_reuse_is_off():
    postgres = {"ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": False}
    persistent(postgres)
    assert postgres["CONN_MAX_AGE"] is None
    assert postgres["CONN_HEALTH_CHECKS"] is True
    off = {"ENGINE": "django.db.backends.sqlite3", "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False}
    persistent(off)
    assert off == {"ENGINE": "django.db.backends.sqlite3", "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False}


@pytest.mark.django_db(transaction=True)
def test_kept_across_periodic_checks_and_replaced_when_broken(monkeypatch):
    database = dict(connection.settings_dict, CONN_MAX_AGE=60)
    persistent(database)
    for key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS"):
        monkeypatch.setitem(connection.settings_dict, key, database[key])
    connection.close()
    try:
        connection.ensure_connection()
        kept = connection.connection
        assert connection.close_at is None
        for _ in range(3):
            close_old_connections()  # the bridge's periodic job
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            assert connection.connection is kept

        # Broken after a periodic check: the health check before the next statement replaces it.
        usable = {"now": False}
        real_is_usable = connection.is_usable
        monkeypatch.setattr(connection, "is_usable", lambda: usable["now"] and real_is_usable())
        close_old_connections()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        replaced = connection.connection
        assert replaced is not None
        assert replaced is not kept
        assert connection.close_at is None

        # An error in a request: the periodic check replaces an unusable connection.
        connection.errors_occurred = True
        close_old_connections()
        assert connection.connection is None
        usable["now"] = True
        connection.ensure_connection()
        assert connection.connection is not replaced
    finally:
        monkeypatch.undo()
        connection.close()
