"""What a send writes besides its message's row: an entry in each index of messaging_message,
and an update of its conversation and of the sender's read position (messaging.services.store).
Every send and every read writes these, so messaging.models keeps only the indexes a query
needs (partial ones for what few messages have: a file, a recall, an open stream), and indexes
no column those updates change: on PostgreSQL they are then HOT updates, which write no index
entry."""

from __future__ import annotations

import pytest
from django.db import connection

from mchat.wire import encode
from messaging.models import Conversation, Message, ReadPosition

pytestmark = pytest.mark.django_db


def _indexed_columns(model) -> list[tuple[str, ...]]:
    """The column lists of the table's indexes and unique constraints, duplicates kept."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return sorted(
        tuple(c["columns"])
        for c in constraints.values()
        if (c["index"] or c["unique"] or c["primary_key"]) and not c["foreign_key"] and not c["check"]
    )


def test_only_the_indexes_queries_need():
    assert _indexed_columns(Message) == [
        ("client_id", "seq_id"),  # message_request_once: a repeated request
        ("conversation_id",),  # message_stream_open (partial): the open streamed replies
        ("conversation_id", "seq"),  # message_seq_once: history, numbering, any lookup by conversation
        ("file_key",),  # message_file_key (partial): who may download a file, retention
        ("id",),
        ("msg_id",),  # message_msg_id_once, without a LIKE index
        ("recalled_by_id",),  # message_recalled_by (partial): an employee's deletion
        ("sender_id",),  # an employee's deletion
    ]
    assert ("last_activity_at",) not in _indexed_columns(Conversation)
    assert _indexed_columns(ReadPosition) == [("conversation_id", "employee_id"), ("employee_id",), ("id",)]


def _index_definitions(model) -> dict[str, str]:
    """index name -> its CREATE INDEX statement as the database keeps it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [model._meta.db_table]
            )
        else:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s",
                [model._meta.db_table],
            )
        return {
            name: " ".join((definition or "").replace('"', "").split())
            for name, definition in cursor.fetchall()
        }


def test_the_partial_indexes_hold_only_the_messages_that_have_a_file_a_recall_or_an_open_stream():
    definitions = _index_definitions(Message)
    if connection.vendor == "postgresql":
        conditions = (
            "WHERE (NOT ((file_key)::text = ''::text))",
            "WHERE (recalled_by_id IS NOT NULL)",
            "WHERE ((stream_state)::text = 'open'::text)",
        )
    else:
        conditions = (
            "WHERE NOT (file_key = '')",
            "WHERE recalled_by_id IS NOT NULL",
            "WHERE stream_state = 'open'",
        )
    for name, condition in zip(
        ("message_file_key", "message_recalled_by", "message_stream_open"), conditions, strict=True
    ):
        assert definitions[name].endswith(condition), definitions[name]


def _updates(model) -> tuple[int, int]:
    """(rows updated, of which HOT) in this transaction (the test's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            [model._meta.db_table, model._meta.db_table],
        )
        return cursor.fetchone()


def test_a_send_updates_its_conversation_and_read_position_without_index_entries(
    dispatcher, django_capture_on_commit_callbacks, alice, bob
):
    def send(seq_id: str) -> None:
        topic = f"mchat/msg/req/{alice.employee_id}_dev1/{seq_id}"
        body = encode({"action": "msg.send_private", "to_employee_id": bob.employee_id, "content": "你好"})
        with django_capture_on_commit_callbacks(execute=True):
            (outcome,) = dispatcher.handle_batch([(topic, body)])
        assert outcome.response["code"] == 0

    # What a send changes in those rows is in no index (on both databases): so on PostgreSQL
    # the updates are HOT.
    changed = {Conversation: {"last_seq", "last_activity_at"}, ReadPosition: {"last_read_seq", "updated_at"}}
    for model, columns in changed.items():
        assert not columns & {column for index in _indexed_columns(model) for column in index}, model
    send("s1")  # the pair's conversation is created
    if connection.vendor != "postgresql":
        send("s2")
        assert Conversation.objects.get().last_seq == 2
        assert ReadPosition.objects.get(employee=alice).last_read_seq == 2
        return
    before = {model: _updates(model) for model in (Conversation, ReadPosition)}
    send("s2")  # a pair seen before: the one statement
    send("s3")
    for model, (updated, hot) in before.items():
        now_updated, now_hot = _updates(model)
        assert now_updated - updated == 2, model  # one per send
        assert now_hot - hot == now_updated - updated, model
