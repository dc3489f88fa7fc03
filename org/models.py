from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from mptt.models import MPTTModel, TreeForeignKey

from mchat.wire import EMPLOYEE_ID_PATTERN

# Department ids have the shape of employee ids (mchat.wire): both appear in topics and payloads.
DEPARTMENT_ID_PATTERN = EMPLOYEE_ID_PATTERN


class Department(MPTTModel):
    department_id = models.CharField(
        _("部门编号"),
        max_length=64,
        unique=True,
        validators=[RegexValidator(DEPARTMENT_ID_PATTERN)],
    )
    name = models.CharField(_("名称"), max_length=100)
    parent = TreeForeignKey(
        "self",
        verbose_name=_("上级部门"),
        null=True,
        blank=True,
        related_name="children",
        on_delete=models.PROTECT,
    )
    sort_order = models.IntegerField(_("排序"), default=0)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class MPTTMeta:
        order_insertion_by = ["sort_order", "name"]

    class Meta:
        verbose_name = _("部门")
        verbose_name_plural = _("部门")

    def __str__(self) -> str:
        return self.name


class Employee(models.Model):
    employee_id = models.CharField(
        _("员工编号"),
        max_length=64,
        unique=True,
        validators=[RegexValidator(EMPLOYEE_ID_PATTERN)],
    )
    name = models.CharField(_("姓名"), max_length=100)
    department = TreeForeignKey(
        Department,
        verbose_name=_("部门"),
        null=True,
        blank=True,
        related_name="employees",
        on_delete=models.PROTECT,
    )
    manager = models.ForeignKey(
        "self",
        verbose_name=_("直属上级"),
        null=True,
        blank=True,
        related_name="reports",
        on_delete=models.SET_NULL,
    )
    is_ai_agent = models.BooleanField(_("AI Agent"), default=False)
    is_org_admin = models.BooleanField(_("组织管理员"), default=False)
    is_active = models.BooleanField(_("在职"), default=True)
    title = models.CharField(_("职位"), max_length=100, blank=True)
    email = models.EmailField(_("邮箱"), blank=True)
    phone = models.CharField(_("电话"), max_length=32, blank=True)
    avatar = models.CharField(_("头像"), max_length=500, blank=True)
    signature = models.CharField(_("个性签名"), max_length=200, blank=True)
    # Mosquitto password_file format ($7$, PBKDF2-SHA512): the password itself is never stored.
    mqtt_password_hash = models.CharField(_("MQTT 凭证摘要"), max_length=200, editable=False)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)
    last_seen_at = models.DateTimeField(_("最后在线"), null=True, blank=True)
    # The console (or REST) account this employee administers MChat with: what it does there
    # is done as this employee (audit actor, operator_id / recalled_by of deliveries).
    console_user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("控制台账号"),
        null=True,
        blank=True,
        related_name="mchat_employee",
        on_delete=models.SET_NULL,
        limit_choices_to={"is_staff": True},
        help_text=_(
            "该员工登录管理控制台所用的账号：在控制台中解散群组、撤回消息、发布通知等操作，"
            "审计日志和通知中都记为该员工。"
        ),
    )

    class Meta:
        verbose_name = _("员工")
        verbose_name_plural = _("员工")
        indexes = [models.Index(fields=["is_active", "department"])]
        permissions = [("reset_credentials", _("可以重置员工的 MQTT 凭证"))]

    def __str__(self) -> str:
        return f"{self.name} ({self.employee_id})"


class AgentProfile(models.Model):
    """What an AI-agent employee offers (spec 3.15) and who answers for it."""

    employee = models.OneToOneField(
        Employee,
        verbose_name=_("Agent"),
        related_name="agent_profile",
        on_delete=models.CASCADE,
    )
    owner = models.ForeignKey(
        Employee,
        verbose_name=_("负责人"),
        null=True,
        blank=True,
        related_name="owned_agents",
        on_delete=models.SET_NULL,
    )
    description = models.CharField(_("简介"), max_length=500, blank=True)
    capabilities = models.JSONField(_("能力"), default=list, blank=True)
    skills_badge = models.JSONField(_("技能徽章"), default=list, blank=True)
    # A2A-style skills for the agent card (org.agent_cards): [{id, name, description, examples, tags}].
    skills = models.JSONField(_("技能"), default=list, blank=True)
    # How long msg.send_private waits for the agent's acknowledgement before answering 504.
    ack_deadline_seconds = models.PositiveIntegerField(_("应答时限（秒）"), default=10)

    class Meta:
        verbose_name = _("Agent 配置")
        verbose_name_plural = _("Agent 配置")

    def __str__(self) -> str:
        return str(self.employee)


class OrgVersion(models.Model):
    """The organisation's version, one row (pk=1).

    Bumped in the same transaction as every change org.tree shows, so a client holding the
    current version re-fetches nothing. Its row lock also serialises tree writes (MPTT updates
    must not interleave); on SQLite the database-wide write lock does that.
    """

    counter = models.BigIntegerField(default=0)
    # Random per change: a counter alone could repeat after the database is recreated.
    token = models.CharField(max_length=16, default="")

    class Meta:
        verbose_name = _("组织版本")
        verbose_name_plural = _("组织版本")

    @property
    def version(self) -> str:
        return f"{self.counter}.{self.token}"


class SystemNotice(models.Model):
    """A notice broadcast to every employee on mchat/system/notify (spec 3.19)."""

    notify_id = models.CharField(_("通知编号"), max_length=40, unique=True, editable=False)
    title = models.CharField(_("标题"), max_length=200)
    text = models.TextField(_("内容"), max_length=5000)
    sent_by = models.CharField(_("发布人"), max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(_("发布时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("系统通知")
        verbose_name_plural = _("系统通知")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class Device(models.Model):
    """A client id an employee has used; recorded by auth.bind."""

    employee = models.ForeignKey(Employee, related_name="devices", on_delete=models.CASCADE)
    client_id = models.CharField(max_length=130, unique=True)
    device = models.CharField(max_length=64)
    bound_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("设备")
        verbose_name_plural = _("设备")


class AuthChallenge(models.Model):
    """A one-time second factor for sensitive actions (DESIGN §5); the token is stored hashed."""

    challenge_id = models.CharField(max_length=40, unique=True)
    employee = models.ForeignKey(Employee, related_name="challenges", on_delete=models.CASCADE)
    token_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


# --- Presence (spec 3.17) ----------------------------------------------------------------------


class DevicePresence(models.Model):
    """What the bridge last learnt about one client id from mchat/status/{employee_id}.

    An employee is online while any of its devices is; see org.presence.
    """

    employee = models.ForeignKey(Employee, related_name="device_presences", on_delete=models.CASCADE)
    client_id = models.CharField(max_length=130, unique=True)
    # The "device" field of the online payload (web, ios...), as the client describes itself.
    device = models.CharField(max_length=64, blank=True)
    online = models.BooleanField(default=False)
    online_since = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(_("最后在线"), null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = _("设备在线状态")
        verbose_name_plural = _("设备在线状态")
        indexes = [models.Index(fields=["employee", "online"])]

    def __str__(self) -> str:
        return f"{self.client_id} ({'online' if self.online else 'offline'})"


# --- Web sign-in (DESIGN §8) ---------------------------------------------------------------


class WebAccount(models.Model):
    """An employee's web sign-in: a Django user of its own (not staff, so no console access),
    whose password is the web password HR sets. Console accounts are separate users."""

    employee = models.OneToOneField(
        Employee, verbose_name=_("员工"), related_name="web_account", on_delete=models.CASCADE
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, related_name="mchat_web_account", on_delete=models.CASCADE
    )
    # Set by HR (and createemployee): the employee chooses a new password at first sign-in.
    must_change_password = models.BooleanField(_("首次登录须修改密码"), default=True)
    password_changed_at = models.DateTimeField(_("密码修改时间"), null=True, blank=True)
    # The company identity provider's subject ("sub") of the employee's single sign-on, once
    # linked (org.web_oidc); blank until the first SSO sign-in.
    sso_subject = models.CharField(_("企业账号标识"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("网页登录账号")
        verbose_name_plural = _("网页登录账号")

    def __str__(self) -> str:
        return str(self.employee)


class WebSession(models.Model):
    """One web sign-in and the short-lived MQTT credentials issued to it.

    `sid` is inside every token issued to it; once `ended_at` is set (sign-out, deactivation,
    credential or password reset) the broker refuses those tokens and disconnects `client_ids`.
    """

    class Method(models.TextChoices):
        PASSWORD = "password", _("密码")
        SSO = "sso", _("企业账号")

    sid = models.CharField(max_length=64, unique=True)
    employee = models.ForeignKey(
        Employee, verbose_name=_("员工"), related_name="web_sessions", on_delete=models.CASCADE
    )
    client_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(_("登录时间"), auto_now_add=True)
    method = models.CharField(_("登录方式"), max_length=16, choices=Method.choices, default=Method.PASSWORD)
    # The browser as it said at sign-in, and where from (REMOTE_ADDR, or the proxy's client).
    user_agent = models.CharField(_("浏览器"), max_length=300, blank=True)
    address = models.CharField(_("地址"), max_length=64, blank=True)
    # The page's latest credential refresh (every few minutes while it is open).
    last_seen_at = models.DateTimeField(_("最近活动"), null=True, blank=True)
    # The latest expiry of a token issued to this session: the broker must refuse its tokens
    # until then once the session ended.
    tokens_valid_until = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(_("结束时间"), null=True, blank=True)
    end_reason = models.CharField(_("结束原因"), max_length=32, blank=True)

    class Meta:
        verbose_name = _("网页会话")
        verbose_name_plural = _("网页会话")
        indexes = [
            models.Index(fields=["employee", "ended_at"]),
            models.Index(fields=["ended_at", "tokens_valid_until"]),
        ]
