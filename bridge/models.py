from django.db import models


class ProcessedRequest(models.Model):
    """The answer given to (client_id, seq_id): a repeat gets it again and executes nothing."""

    client_id = models.CharField(max_length=130)
    seq_id = models.CharField(max_length=128)
    action = models.CharField(max_length=64)
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_id", "seq_id"], name="processed_request_once")
        ]
