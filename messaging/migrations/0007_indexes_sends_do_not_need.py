"""Indexes that every send wrote and no query needs (bench/REPORT.md, "A lone request"):

- messaging_message: the index of conversation (message_seq_once (conversation, seq) serves
  it), of file_key and recalled_by (0006 made partial ones), and msg_id's LIKE index
  (unique=True becomes the constraint message_msg_id_once: on PostgreSQL the existing unique
  constraint is renamed, nothing is rebuilt);
- messaging_conversation.last_activity_at and messaging_readposition (conversation,
  last_read_seq): with them no update of a conversation or a read position could be HOT;
- messaging_readposition's index of conversation (read_position_once serves it).
"""

from django.db import migrations, models


def _msg_id_constraint_names(schema_editor) -> tuple[str, list[str]]:
    """The unique constraint unique=True made on msg_id, and its LIKE index (PostgreSQL)."""
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, "messaging_message")
    unique = [
        name
        for name, c in constraints.items()
        if c["columns"] == ["msg_id"] and c["unique"] and name != "message_msg_id_once"
    ]
    like = [name for name, c in constraints.items() if c["columns"] == ["msg_id"] and name.endswith("_like")]
    return (unique[0] if unique else ""), like


def msg_id_unique_renamed(apps, schema_editor):
    # Elsewhere (SQLite) the column keeps its UNIQUE: the same rule, and there is no LIKE index.
    if schema_editor.connection.vendor != "postgresql":
        return
    unique, like = _msg_id_constraint_names(schema_editor)
    quote = schema_editor.quote_name
    if unique:
        schema_editor.execute(
            f"ALTER TABLE messaging_message RENAME CONSTRAINT {quote(unique)} TO message_msg_id_once"
        )
    for name in like:
        schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")


def msg_id_unique_renamed_back(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE messaging_message RENAME CONSTRAINT message_msg_id_once TO messaging_message_msg_id_key"
    )
    schema_editor.execute(
        "CREATE INDEX messaging_message_msg_id_d1685463_like ON messaging_message (msg_id varchar_pattern_ops)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0006_message_partial_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="conversation",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="messages",
                to="messaging.conversation",
            ),
        ),
        migrations.AlterField(
            model_name="message",
            name="file_key",
            field=models.CharField(blank=True, max_length=300, verbose_name="文件对象键"),
        ),
        migrations.AlterField(
            model_name="message",
            name="recalled_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=models.deletion.PROTECT,
                related_name="+",
                to="org.employee",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(msg_id_unique_renamed, msg_id_unique_renamed_back)],
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="msg_id",
                    field=models.CharField(max_length=40, verbose_name="消息编号"),
                ),
                migrations.AddConstraint(
                    model_name="message",
                    constraint=models.UniqueConstraint(fields=("msg_id",), name="message_msg_id_once"),
                ),
            ],
        ),
        migrations.AlterField(
            model_name="conversation",
            name="last_activity_at",
            field=models.DateTimeField(verbose_name="最近活动"),
        ),
        migrations.RemoveIndex(
            model_name="readposition",
            name="messaging_r_convers_a039b3_idx",
        ),
        migrations.AlterField(
            model_name="readposition",
            name="conversation",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="read_positions",
                to="messaging.conversation",
            ),
        ),
    ]
