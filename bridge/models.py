from django.db import connection, models


class ProcessedRequest(models.Model):
    """The answer given to (client_id, seq_id): a repeat gets it again and executes nothing.

    `response` is NULL while the answer is pending (a handler returned bridge.deferred.Deferred):
    a repeat then gets what the pending wait says (messaging.agent_waits.agent_ack_answers):
    nothing while it waits, its answer once resolved.
    """

    client_id = models.CharField(max_length=130)
    seq_id = models.CharField(max_length=128)
    action = models.CharField(max_length=64)
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client_id", "seq_id"], name="processed_request_once")]


def unanswered_condition(client_id_column: str, seq_id_column: str) -> str:
    """SQL that holds when the request in these columns has no recorded answer: for a
    statement that must not serve a request answered before (a refusal included)."""
    table = connection.ops.quote_name(ProcessedRequest._meta.db_table)
    return (
        f"NOT EXISTS (SELECT 1 FROM {table} AS p "
        f"WHERE p.client_id = {client_id_column} AND p.seq_id = {seq_id_column})"
    )
