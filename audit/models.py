"""The append-only audit log, legal holds and per-group message retention (DESIGN §10).

Actors and targets are stored as type + public id + display text, not as foreign keys: a row
must outlive what it names (a deleted department, a purged message) and must not make the
audit app depend on the models it records.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class AuditLogIsAppendOnly(Exception):
    """Raised by any attempt to change or delete an audit row through the ORM."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditLogIsAppendOnly("audit events cannot be changed")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditLogIsAppendOnly("audit events cannot be changed")

    def delete(self):
        raise AuditLogIsAppendOnly("audit events cannot be deleted (retention: audit.retention)")

    def _retention_delete(self) -> int:
        """Only audit.retention removes rows: those past MCHAT_AUDIT_RETENTION_DAYS."""
        deleted, _detail = models.QuerySet.delete(self)
        return deleted


class AuditEvent(models.Model):
    class ActorType(models.TextChoices):
        EMPLOYEE = "employee", _("员工")
        USER = "user", _("控制台用户")
        SYSTEM = "system", _("系统")

    class Source(models.TextChoices):
        MQTT = "mqtt", "MQTT"
        REST = "rest", "REST"
        CONSOLE = "console", _("管理控制台")
        WEB = "web", _("网页客户端")
        IMPORT = "import", _("导入")
        COMMAND = "command", _("管理命令")
        SYSTEM = "system", _("系统任务")

    occurred_at = models.DateTimeField(_("时间"), db_index=True)
    actor_type = models.CharField(_("操作者类型"), max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(_("操作者"), max_length=150, blank=True)
    actor_display = models.CharField(_("操作者名称"), max_length=200, blank=True)
    action = models.CharField(_("操作"), max_length=64)
    target_type = models.CharField(_("对象类型"), max_length=32)
    target_id = models.CharField(_("对象"), max_length=300, blank=True)
    target_display = models.CharField(_("对象名称"), max_length=200, blank=True)
    # {"field": {"before": x, "after": y}}; a secret is recorded as {"field": "changed"};
    # counts for bulk operations ({"messages": 120}).
    changes = models.JSONField(_("变更"), default=dict, blank=True)
    source = models.CharField(_("来源"), max_length=16, choices=Source.choices)
    # mqtt: the connection's client id; rest: the token owner; console: the user name.
    client_id = models.CharField(_("客户端"), max_length=130, blank=True)
    source_user = models.CharField(_("来源用户"), max_length=150, blank=True)
    address = models.CharField(_("地址"), max_length=64, blank=True)
    seq_id = models.CharField(_("请求 seq_id"), max_length=128, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("审计事件")
        verbose_name_plural = _("审计事件")
        # No add/change/delete permission exists for anyone: rows are written by services only.
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["actor_id", "occurred_at"], name="audit_actor_time"),
            models.Index(fields=["action", "occurred_at"], name="audit_action_time"),
            models.Index(fields=["target_type", "target_id", "occurred_at"], name="audit_target_time"),
            models.Index(fields=["source", "occurred_at"], name="audit_source_time"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditLogIsAppendOnly("audit events cannot be changed")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogIsAppendOnly("audit events cannot be deleted")


class LegalHold(models.Model):
    """While active, nothing an employee wrote or could see (or a group's conversation) is
    deleted by message retention."""

    employee = models.ForeignKey(
        "org.Employee",
        verbose_name=_("员工"),
        null=True,
        blank=True,
        related_name="legal_holds",
        on_delete=models.PROTECT,
    )
    group = models.ForeignKey(
        "messaging.Group",
        verbose_name=_("群组"),
        null=True,
        blank=True,
        related_name="legal_holds",
        on_delete=models.PROTECT,
    )
    reason = models.CharField(_("原因"), max_length=500)
    placed_by = models.CharField(_("设置人"), max_length=150, blank=True, editable=False)
    placed_at = models.DateTimeField(_("设置时间"), auto_now_add=True)
    released_at = models.DateTimeField(_("解除时间"), null=True, blank=True, editable=False)
    released_by = models.CharField(_("解除人"), max_length=150, blank=True, editable=False)

    class Meta:
        verbose_name = _("法律保留")
        verbose_name_plural = _("法律保留")
        constraints = [
            models.CheckConstraint(
                condition=Q(employee__isnull=False, group__isnull=True)
                | Q(employee__isnull=True, group__isnull=False),
                name="legal_hold_one_subject",
            )
        ]

    def __str__(self) -> str:
        return str(self.employee or self.group)

    @property
    def is_active(self) -> bool:
        return self.released_at is None


class GroupRetention(models.Model):
    """A group's own message retention, replacing MCHAT_MESSAGE_RETENTION_DAYS for it."""

    group = models.OneToOneField(
        "messaging.Group",
        verbose_name=_("群组"),
        related_name="retention",
        on_delete=models.CASCADE,
    )
    # None: keep this group's messages for ever, whatever the default.
    keep_days = models.PositiveIntegerField(
        _("消息保留天数"), null=True, blank=True, help_text=_("留空表示永久保留")
    )
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("群消息保留策略")
        verbose_name_plural = _("群消息保留策略")

    def __str__(self) -> str:
        return str(self.group)
