from django.db import models
from django.db.models import Q
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
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)
    dismissed_at = models.DateTimeField(_("解散时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("群组")
        verbose_name_plural = _("群组")

    def __str__(self) -> str:
        return self.name

    @property
    def is_dismissed(self) -> bool:
        return self.dismissed_at is not None


class GroupMember(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("群主")
        ADMIN = "admin", _("管理员")
        MEMBER = "member", _("成员")

    group = models.ForeignKey(Group, related_name="memberships", on_delete=models.CASCADE)
    employee = models.ForeignKey(Employee, related_name="group_memberships", on_delete=models.CASCADE)
    role = models.CharField(_("角色"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(_("入群时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("群成员")
        verbose_name_plural = _("群成员")
        constraints = [models.UniqueConstraint(fields=["group", "employee"], name="group_member_once")]

    def __str__(self) -> str:
        return f"{self.group_id}:{self.employee_id} ({self.role})"

    @property
    def manages_group(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Conversation(models.Model):
    """A private pair or a group: the unit that numbers its messages 1, 2, 3... without gaps."""

    class Kind(models.TextChoices):
        PRIVATE = "private", _("单聊")
        GROUP = "group", _("群聊")

    kind = models.CharField(_("类型"), max_length=10, choices=Kind.choices)
    group = models.OneToOneField(
        Group, null=True, blank=True, related_name="conversation", on_delete=models.CASCADE
    )
    # A private pair in canonical order (lower pk first), so each pair has one row.
    employee_low = models.ForeignKey(
        Employee, null=True, blank=True, related_name="+", on_delete=models.CASCADE
    )
    employee_high = models.ForeignKey(
        Employee, null=True, blank=True, related_name="+", on_delete=models.CASCADE
    )
    # Taken with UPDATE ... RETURNING inside the sender's transaction: the row lock orders
    # concurrent senders across processes and a rollback gives the number back. Neither is
    # indexed: every message updates both, and an update that changes no indexed column
    # writes no index entry (a HOT update); a list of conversations sorts one employee's few.
    last_seq = models.BigIntegerField(_("最新序号"), default=0)
    last_activity_at = models.DateTimeField(_("最近活动"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("会话")
        verbose_name_plural = _("会话")
        constraints = [
            models.UniqueConstraint(
                fields=["employee_low", "employee_high"],
                condition=Q(kind="private"),
                name="conversation_private_pair_once",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind="group", group__isnull=False, employee_low__isnull=True)
                    | Q(
                        kind="private",
                        group__isnull=True,
                        employee_low__isnull=False,
                        employee_high__isnull=False,
                    )
                ),
                name="conversation_kind_fields",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.GROUP:
            return f"group:{self.group_id}"
        return f"private:{self.employee_low_id}-{self.employee_high_id}"

    @property
    def is_group(self) -> bool:
        return self.kind == self.Kind.GROUP

    def peer_of(self, employee: Employee) -> Employee:
        """The other participant of a private conversation (oneself in a note-to-self)."""
        return self.employee_high if self.employee_low_id == employee.pk else self.employee_low


class Message(models.Model):
    """A message. Each index below is written by every send: only those a query needs, and
    partial ones for what few messages have (a file, a recall, an open stream)."""

    class ContentType(models.TextChoices):
        TEXT = "text", _("文本")
        IMAGE = "image", _("图片")
        FILE = "file", _("文件")

    # No index of its own: message_seq_once (conversation, seq) serves every lookup by conversation.
    conversation = models.ForeignKey(
        Conversation, related_name="messages", on_delete=models.CASCADE, db_index=False
    )
    seq = models.BigIntegerField(_("会话内序号"))
    # Unique through message_msg_id_once: unique=True would add a LIKE index on PostgreSQL.
    msg_id = models.CharField(_("消息编号"), max_length=40)
    sender = models.ForeignKey(
        Employee, verbose_name=_("发送者"), related_name="sent_messages", on_delete=models.PROTECT
    )
    # Exactly what the sender's request carried after validation: a string for plain text,
    # else {"type": ..., body fields} (spec 1.3). Deliveries and history serve it unchanged.
    content = models.JSONField(_("内容"))
    content_type = models.CharField(_("内容类型"), max_length=10, choices=ContentType.choices)
    sent_at = models.DateTimeField(_("发送时间"))
    recalled_at = models.DateTimeField(_("撤回时间"), null=True, blank=True)
    recalled_by = models.ForeignKey(
        Employee, null=True, blank=True, related_name="+", on_delete=models.PROTECT, db_index=False
    )
    # The request that created it: a repeat of (client_id, seq_id) never makes a second message,
    # even after the bridge's idempotency record has expired.
    client_id = models.CharField(max_length=130, blank=True)
    seq_id = models.CharField(max_length=128, blank=True)
    # The uploaded object an image/file message refers to (content.key): who may download it.
    file_key = models.CharField(_("文件对象键"), max_length=300, blank=True)
    # A streamed reply (messaging.streams): "open" while its text is still coming (content is
    # the text so far, flushed every few seconds), then "ended" or "canceled"; "" otherwise.
    # db_default: the bulk insert paths of ordinary sends do not name these columns.
    stream_state = models.CharField(_("流式状态"), max_length=10, blank=True, default="", db_default="")
    stream_touched_at = models.DateTimeField(_("流式最近追加"), null=True, blank=True)
    # The msg_id this message answers (a streamed reply's optional reply_to).
    reply_to = models.CharField(_("回复的消息"), max_length=40, blank=True, default="", db_default="")

    class Meta:
        verbose_name = _("消息")
        verbose_name_plural = _("消息")
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_once"),
            models.UniqueConstraint(fields=["msg_id"], name="message_msg_id_once"),
            models.UniqueConstraint(
                fields=["client_id", "seq_id"], condition=~Q(seq_id=""), name="message_request_once"
            ),
        ]
        indexes = [
            models.Index(fields=["file_key"], condition=~Q(file_key=""), name="message_file_key"),
            # An employee's deletion looks for the messages it recalled (PROTECT).
            models.Index(
                fields=["recalled_by"], condition=Q(recalled_by__isnull=False), name="message_recalled_by"
            ),
            # The open streamed replies (messaging.streams: streams_expire every 10 s on every
            # bridge, and a stream's start); without it each of those read the whole table.
            # Keyed on conversation, which a stream's updates never change: they can be HOT.
            models.Index(
                fields=["conversation"], condition=Q(stream_state="open"), name="message_stream_open"
            ),
        ]

    def __str__(self) -> str:
        return self.msg_id

    @property
    def is_recalled(self) -> bool:
        return self.recalled_at is not None


class AgentTask(models.Model):
    """The state of a task: a private message to an AI agent (DESIGN §9, messaging.agent_tasks).

    No row means "submitted"; the agent moves it, the sender may cancel it; terminal states
    never change.
    """

    class State(models.TextChoices):
        SUBMITTED = "submitted", _("已提交")
        WORKING = "working", _("处理中")
        INPUT_REQUIRED = "input-required", _("需要补充信息")
        COMPLETED = "completed", _("已完成")
        FAILED = "failed", _("失败")
        CANCELED = "canceled", _("已取消")

    message = models.OneToOneField(
        Message, primary_key=True, related_name="agent_task", on_delete=models.CASCADE
    )
    state = models.CharField(_("任务状态"), max_length=16, choices=State.choices)
    status_text = models.CharField(_("状态说明"), max_length=200, blank=True)
    updated_at = models.DateTimeField(_("更新时间"))

    class Meta:
        verbose_name = _("Agent 任务")
        verbose_name_plural = _("Agent 任务")


class ReadPosition(models.Model):
    """How far one participant has read one conversation (the seq of the last read message).

    Moved by every message its participant sends and every read: last_read_seq and updated_at
    are not indexed, so these updates write no index entry (HOT); read_position_once
    (conversation, employee) serves every lookup by conversation."""

    conversation = models.ForeignKey(
        Conversation, related_name="read_positions", on_delete=models.CASCADE, db_index=False
    )
    employee = models.ForeignKey(Employee, related_name="read_positions", on_delete=models.CASCADE)
    last_read_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("已读位置")
        verbose_name_plural = _("已读位置")
        constraints = [
            models.UniqueConstraint(fields=["conversation", "employee"], name="read_position_once")
        ]


class ReceiptTally(models.Model):
    """Coalescing state of one group message's read receipts, shared by every process.

    `pending`: read positions moved past the message since the last event. An event is due
    when pending and `emitted_at` is at least MCHAT_RECEIPT_INTERVAL_SECONDS ago;
    `scheduled_for` records a delayed flush already queued, so only one is queued at a time.
    """

    message = models.OneToOneField(
        Message, primary_key=True, related_name="receipt_tally", on_delete=models.CASCADE
    )
    conversation = models.ForeignKey(Conversation, related_name="+", on_delete=models.CASCADE)
    pending = models.BooleanField(default=False)
    emitted_at = models.DateTimeField(null=True, blank=True)
    emitted_count = models.IntegerField(default=0)
    scheduled_for = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["conversation", "pending"])]


# --- Files in object storage (DESIGN §5 "Files"; messaging.files) ------------------------------


class StoredFile(models.Model):
    """An object an employee was allowed to upload under its own prefix (file.upload_url).

    `size` and `content_type` are what the upload was granted for; `uploaded_at` is set once
    the bytes are known to be there (local: the upload view; S3: checked with HEAD).
    """

    key = models.CharField(_("对象键"), max_length=300, unique=True)
    owner = models.ForeignKey(
        Employee, verbose_name=_("上传者"), related_name="stored_files", on_delete=models.PROTECT
    )
    name = models.CharField(_("文件名"), max_length=255)
    content_type = models.CharField(_("内容类型"), max_length=127)
    size = models.BigIntegerField(_("大小（字节）"))
    backend = models.CharField(_("存储后端"), max_length=10)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    uploaded_at = models.DateTimeField(_("上传完成时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("文件")
        verbose_name_plural = _("文件")

    def __str__(self) -> str:
        return self.key

    @property
    def is_uploaded(self) -> bool:
        return self.uploaded_at is not None


class UsedFileUrl(models.Model):
    """A spent single-use URL of the local backend: its nonce is never accepted again.

    Rows past `expires_at` may be deleted: the URL would be refused as expired anyway.
    """

    nonce = models.CharField(max_length=32, unique=True)
    key = models.CharField(max_length=300)
    method = models.CharField(max_length=6)
    used_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("已使用的文件链接")
        verbose_name_plural = _("已使用的文件链接")


class AgentAckWait(models.Model):
    """A msg.send_private to an AI agent whose answer waits for the agent's msg.read_ack
    (DESIGN §5). Resolved exactly once, by the acknowledgement or by the deadline sweep,
    whichever process gets there first (messaging.agent_waits)."""

    class State(models.TextChoices):
        PENDING = "pending", _("等待确认")
        ACKNOWLEDGED = "acknowledged", _("已确认")
        EXPIRED = "expired", _("已超时")

    # The request to answer: mchat/msg/resp/{client_id}/{seq_id}.
    client_id = models.CharField(max_length=130)
    seq_id = models.CharField(max_length=128)
    message = models.ForeignKey(Message, related_name="+", on_delete=models.CASCADE)
    agent = models.ForeignKey(Employee, related_name="+", on_delete=models.CASCADE)
    # The message's conversation and number, so an acknowledgement finds what it covers.
    conversation = models.ForeignKey(Conversation, related_name="+", on_delete=models.CASCADE)
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
