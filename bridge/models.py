from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class ProcessedRequest(models.Model):
    """The answer given to (client_id, seq_id): a repeat gets it again and executes nothing.

    `response` is NULL while the answer is pending (a handler returned bridge.deferred.Deferred):
    a repeat then gets nothing now, the answer is published once it is written.
    """

    client_id = models.CharField(max_length=130)
    seq_id = models.CharField(max_length=128)
    action = models.CharField(max_length=64)
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client_id", "seq_id"], name="processed_request_once")]


class AgentAckWait(models.Model):
    """A msg.send_private to an AI agent whose answer waits for the agent's msg.read_ack
    (DESIGN §5). Resolved exactly once, by the acknowledgement or by the deadline sweep,
    whichever bridge process gets there first (bridge.deferred)."""

    class State(models.TextChoices):
        PENDING = "pending", _("等待确认")
        ACKNOWLEDGED = "acknowledged", _("已确认")
        EXPIRED = "expired", _("已超时")

    # The request to answer: mchat/msg/resp/{client_id}/{seq_id}.
    client_id = models.CharField(max_length=130)
    seq_id = models.CharField(max_length=128)
    message = models.ForeignKey("messaging.Message", related_name="+", on_delete=models.CASCADE)
    agent = models.ForeignKey("org.Employee", related_name="+", on_delete=models.CASCADE)
    # The message's conversation and number, so an acknowledgement finds what it covers.
    conversation = models.ForeignKey("messaging.Conversation", related_name="+", on_delete=models.CASCADE)
    seq = models.BigIntegerField()
    deadline = models.DateTimeField()
    # `data` of the success answer (spec 3.11).
    response_data = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("Agent 确认等待")
        verbose_name_plural = _("Agent 确认等待")
        constraints = [models.UniqueConstraint(fields=["client_id", "seq_id"], name="agent_ack_wait_once")]
        indexes = [
            models.Index(fields=["deadline"], condition=Q(state="pending"), name="agent_ack_wait_due"),
            models.Index(
                fields=["conversation", "agent", "seq"],
                condition=Q(state="pending"),
                name="agent_ack_wait_open",
            ),
            models.Index(fields=["resolved_at"], name="agent_ack_wait_resolved"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id}/{self.seq_id} ({self.state})"
