"""`publish_json_on_commit`: at once in autocommit, at COMMIT inside a transaction, never after
a rollback; a list of topics in its order."""

from __future__ import annotations

import pytest
from django.db import transaction

from mchat.outbox import publish_json_on_commit


@pytest.mark.django_db(transaction=True)
def test_publishes_at_once_in_autocommit_in_topic_order(published):
    assert not transaction.get_connection().in_atomic_block
    publish_json_on_commit(["t/b", "t/a", "t/c"], {"n": 1}, qos=0)
    publish_json_on_commit("t/d", {"n": 2}, retain=True)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in published.messages] == [
        ("t/b", {"n": 1}, 0, False),
        ("t/a", {"n": 1}, 0, False),
        ("t/c", {"n": 1}, 0, False),
        ("t/d", {"n": 2}, 1, True),
    ]


@pytest.mark.django_db(transaction=True)
def test_waits_for_commit_and_drops_on_rollback(published):
    with transaction.atomic():
        publish_json_on_commit(["t/1", "t/2"], {"kept": True})
        try:
            with transaction.atomic():
                publish_json_on_commit("t/gone", {"kept": False})
                raise RuntimeError
        except RuntimeError:
            pass
        assert published.messages == []
    assert [(m.topic, m.payload) for m in published.messages] == [
        ("t/1", {"kept": True}),
        ("t/2", {"kept": True}),
    ]
    published.clear()
    try:
        with transaction.atomic():
            publish_json_on_commit("t/never", {})
            raise RuntimeError
    except RuntimeError:
        pass
    assert published.messages == []
