from django.db import models
from django.utils.translation import gettext_lazy as _

from org.models import Employee


class Group(models.Model):
    group_id = models.CharField(_("群编号"), max_length=64, unique=True)
    name = models.CharField(_("群名称"), max_length=100)
    description = models.CharField(_("群描述"), max_length=500, blank=True)
    owner = models.ForeignKey(
        Employee, verbose_name=_("群主"), related_name="owned_groups", on_delete=models.PROTECT
    )
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    dismissed_at = models.DateTimeField(_("解散时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("群组")
        verbose_name_plural = _("群组")

    def __str__(self) -> str:
        return self.name


class GroupMember(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("群主")
        ADMIN = "admin", _("管理员")
        MEMBER = "member", _("成员")

    group = models.ForeignKey(Group, related_name="memberships", on_delete=models.CASCADE)
    employee = models.ForeignKey(Employee, related_name="group_memberships", on_delete=models.CASCADE)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("群成员")
        verbose_name_plural = _("群成员")
        constraints = [
            models.UniqueConstraint(fields=["group", "employee"], name="group_member_once")
        ]
