"""The partial indexes of messaging_message (file_key, recalled_by, open streams): on
PostgreSQL built with CREATE INDEX CONCURRENTLY, which does not hold up sends while it reads
the table (so this migration is not atomic). 0007 then drops the indexes the first two replace."""

from django.db import migrations, models
from django.db.models import Q

INDEXES = [
    models.Index(fields=["file_key"], condition=~Q(file_key=""), name="message_file_key"),
    models.Index(fields=["recalled_by"], condition=Q(recalled_by__isnull=False), name="message_recalled_by"),
    models.Index(fields=["conversation"], condition=Q(stream_state="open"), name="message_stream_open"),
]


def _concurrently(schema_editor) -> dict:
    return {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}


def indexes_add(apps, schema_editor):
    model = apps.get_model("messaging", "Message")
    for index in INDEXES:
        schema_editor.add_index(model, index, **_concurrently(schema_editor))


def indexes_remove(apps, schema_editor):
    model = apps.get_model("messaging", "Message")
    for index in INDEXES:
        schema_editor.remove_index(model, index, **_concurrently(schema_editor))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("messaging", "0005_message_streams_agent_tasks"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(indexes_add, indexes_remove)],
            state_operations=[migrations.AddIndex(model_name="message", index=index) for index in INDEXES],
        ),
    ]
