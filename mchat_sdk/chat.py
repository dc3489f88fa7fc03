"""A terminal chat client: `python -m mchat_sdk chat --connection zhangsan.json`.

Lines starting with "/" are commands; any other line is sent to the current conversation
(set by /to, /group or /open). Messages, read receipts, presence changes and notifications are
printed as they arrive, above the prompt. Type /help for the commands.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TextIO

from mchat_sdk.client import Client
from mchat_sdk.connection import ConnectionInfo
from mchat_sdk.errors import ConnectionFailed, MChatError
from mchat_sdk.events import Conversation, Event, Message, content_text

try:  # line editing and a redrawable input line where the platform has it
    import readline
except ImportError:  # pragma: no cover - Windows without pyreadline
    readline = None  # type: ignore[assignment]

HELP = """命令：
  /list                      会话列表（序号可用于下面的 <会话>）
  /open <会话>               打开会话：显示最近消息并标记已读，之后直接输入即发送到该会话
  /history <会话> [条数]     查看历史消息（默认 20 条）
  /to <员工ID> <内容>        发送单聊消息
  /group <群ID> <内容>       发送群聊消息
  /groups                    我的群组
  /who                       在线状态
  /agents [技能]             查找 AI Agent（按技能）
  /stop                      停止正在流式回复的消息（最近一条）
  /help                      帮助
  /quit                      退出
<会话> 可以是员工 ID、群 ID（grp_...）或 /list 中的序号。"""


TASK_STATES = {
    "submitted": "已提交",
    "working": "处理中",
    "input-required": "需要补充信息",
    "completed": "已完成",
    "failed": "失败",
    "canceled": "已取消",
}
STREAM_LINE = 60  # characters of a streamed reply printed per line


def local_time(stamp: str | None) -> str:
    """ "2025-02-03T10:00:00.000Z" -> "18:00:00" in the terminal's time zone."""
    if not stamp:
        return "--:--:--"
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return stamp


class Terminal:
    """Prints above the input line without garbling what is being typed."""

    def __init__(self, out: TextIO, interactive: bool):
        self.out = out
        self.interactive = interactive and readline is not None
        self.prompt = "> "
        self.reading = False  # input() is showing the prompt: redraw it after printing
        self._lock = threading.Lock()

    def read(self) -> str:
        with self._lock:
            self.reading = True
        try:
            return input(self.prompt)
        finally:
            with self._lock:
                self.reading = False

    def show(self, text: str) -> None:
        with self._lock:
            if self.interactive and self.reading:
                typed = readline.get_line_buffer()
                self.out.write("\r\x1b[K" + text + "\n" + self.prompt + typed)
            else:
                self.out.write(text + "\n")
            self.out.flush()


class Chat:
    def __init__(self, client: Client, terminal: Terminal):
        self.client = client
        self.term = terminal
        self.me = client.employee_id
        self.names: dict[str, str] = {}
        self.current: Conversation | None = None
        self.listed: list[Conversation] = []
        self.status: dict[str, str] = {}
        # Streamed replies being shown: msg_id -> [shown text, line not printed yet, seq].
        self.streams: dict[str, list] = {}
        self.typing_shown: dict[str, str] = {}  # employee_id -> the status last shown
        # One sender thread: sends leave in the order typed, and a send to an AI agent (which
        # waits for its acknowledgement) does not block typing.
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="mchat-chat-send")
        self.commands: dict[str, Callable[[str], None]] = {
            "/help": lambda arg: self.term.show(HELP),
            "/list": self.cmd_list,
            "/open": self.cmd_open,
            "/history": self.cmd_history,
            "/to": self.cmd_to,
            "/group": self.cmd_group,
            "/groups": self.cmd_groups,
            "/who": self.cmd_who,
            "/agents": self.cmd_agents,
            "/stop": self.cmd_stop,
        }

    # --- start and input --------------------------------------------------------------------

    def start(self) -> None:
        self.client.on("*", self.on_event)
        try:
            tree = self.client.org_tree()
            self.names.update({e["employee_id"]: e["name"] for e in tree.get("employees", [])})
        except MChatError as exc:
            self.term.show(f"（无法获取组织架构：{exc.message}）")
        name = self.names.get(self.me, self.me)
        self.term.show(f"已登录：{name}（{self.client.client_id}）。输入 /help 查看命令。")

    def handle_line(self, line: str) -> bool:
        """Run one input line; False when the user quits."""
        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line.startswith("/"):
            command, _, arg = line.partition(" ")
            action = self.commands.get(command)
            if action is None:
                self.term.show(f"未知命令：{command}（/help 查看命令）")
                return True
            try:
                action(arg.strip())
            except MChatError as exc:
                self.term.show(self.error_text(exc))
            return True
        if self.current is None:
            self.term.show("请先用 /to、/group 或 /open 选择会话。")
            return True
        self.send(self.current, line)
        return True

    def stop(self) -> None:
        self._sender.shutdown(wait=True)

    # --- commands ---------------------------------------------------------------------------

    def cmd_list(self, arg: str) -> None:
        conversations = self.client.conversation_list(limit=50)["conversations"]
        self.listed = []
        if not conversations:
            self.term.show("（还没有会话）")
        for index, summary in enumerate(conversations, 1):
            if summary["conversation_type"] == "group":
                conversation = Conversation("group", summary["group_id"])
            else:
                conversation = Conversation("private", summary["peer_employee_id"])
                self.names.setdefault(conversation.id, summary.get("name", conversation.id))
            self.listed.append(conversation)
            last = summary.get("last_message")
            preview = self.message_preview(last) if last else ""
            unread = f" 未读 {summary['unread_count']}" if summary.get("unread_count") else ""
            name = summary.get("name") if conversation.type == "group" else None
            self.term.show(f"{index:>3}. {self.label(conversation, name)}{unread}  {preview}")

    def cmd_open(self, arg: str) -> None:
        conversation = self.resolve(arg)
        self.current = conversation
        self.set_prompt()
        self.show_history(conversation, 10, acknowledge=True)

    def cmd_history(self, arg: str) -> None:
        target, _, count = arg.partition(" ")
        limit = int(count) if count.strip().isdigit() else 20
        self.show_history(self.resolve(target), max(1, min(limit, 100)), acknowledge=True)

    def cmd_to(self, arg: str) -> None:
        employee_id, _, text = arg.partition(" ")
        if not employee_id:
            self.term.show("用法：/to <员工ID> <内容>")
            return
        self.current = Conversation("private", employee_id)
        self.set_prompt()
        if text.strip():
            self.send(self.current, text.strip())

    def cmd_group(self, arg: str) -> None:
        group_id, _, text = arg.partition(" ")
        if not group_id:
            self.term.show("用法：/group <群ID> <内容>")
            return
        self.current = Conversation("group", group_id)
        self.set_prompt()
        if text.strip():
            self.send(self.current, text.strip())

    def cmd_groups(self, arg: str) -> None:
        groups = self.client.group_list()
        if not groups:
            self.term.show("（没有群组）")
        for group in groups:
            self.term.show(
                f"  {group['group_id']}  {group['name']}（{group.get('member_count', '?')} 人，{group['role']}）"
            )

    def cmd_who(self, arg: str) -> None:
        online = sorted(eid for eid, data in self.client.presence.items() if data.get("status") == "online")
        if not online:
            self.term.show("（没有人在线）")
        for employee_id in online:
            self.term.show(f"  ● {self.person(employee_id)}")

    def cmd_agents(self, arg: str) -> None:
        found = self.client.agent_capability_list(arg or None)
        profiles = found.get("agent_profiles", [])
        if not profiles:
            self.term.show("（没有找到 AI Agent）")
        for profile in profiles:
            state = "●" if profile.get("online") else "○"
            skills = "、".join(profile.get("capabilities", []))
            badges = " ".join(profile.get("skills_badge", []))
            self.term.show(
                f"  {state} {profile['name']}（{profile['employee_id']}）  {skills}  {badges}".rstrip()
            )

    # --- sending ------------------------------------------------------------------------------

    def send(self, conversation: Conversation, text: str) -> None:
        def deliver() -> None:
            try:
                sent = self.client.send(conversation, text, timeout=self.client.request_timeout + 600)
                self.term.show(f"  ✓ 已发送 #{sent.get('seq', '?')}")
            except MChatError as exc:
                self.term.show(self.error_text(exc))
            except Exception as exc:
                self.term.show(f"  ✗ {type(exc).__name__}: {exc}")

        self._sender.submit(deliver)

    # --- incoming -----------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        text = self.describe(event)
        if text:
            self.term.show(text)

    def describe(self, event: Event) -> str | None:
        data = event.data
        if event.kind == "message" and event.message is not None:
            self.typing_shown.pop(event.message.from_employee_id, None)  # a message clears typing
            if data.get("stream") and event.message.msg_id in self.streams:
                return self.stream_finished(event.message)
            return self.message_line(event.message)
        if event.kind == "stream":
            return self.stream_line(data)
        if event.kind == "typing":
            return self.typing_line(data)
        if event.kind == "task_status":
            label = TASK_STATES.get(data.get("state", ""), data.get("state", ""))
            detail = f"：{data['status_text']}" if data.get("status_text") else ""
            return f"  ◆ 任务 #{data.get('seq')} {label}{detail}"
        if event.kind == "receipt":
            if data.get("conversation_type") == "group":
                return (
                    f"  ✓ 群消息 #{data.get('seq')} 已读 {data.get('read_count')}/{data.get('member_count')}"
                )
            return f"  ✓ {self.person(data.get('reader_id', ''))} 已读 #{data.get('seq')}"
        if event.kind == "recall":
            return f"  ⟲ {self.person(data.get('recalled_by') or '')} 撤回了消息 #{data.get('seq')}"
        if event.kind == "status":
            return self.presence_line(event)
        if event.kind in ("notification", "system"):
            body = data.get("body")
            detail = body.get("group_name", "") if isinstance(body, dict) else (data.get("text") or "")
            return f"[通知] {data.get('title', data.get('type', ''))} {detail}".rstrip()
        if event.kind == "profile":
            fields = "、".join(data.get("fields", []))
            return f"[资料] {self.person(event.employee_id or '')} 更新了 {fields}".rstrip()
        if event.kind == "connection":
            if data.get("state") == "disconnected":
                return "[连接] 已断开，正在重连…"
            return "[连接] 已连接" if self.client.connected else None
        return None

    # Streams are shown line by line as their text arrives: a line is printed once complete
    # (a newline, or STREAM_LINE characters), the rest when the stream ends.

    def stream_line(self, data: dict) -> str | None:
        msg_id, kind = str(data.get("msg_id")), data.get("type")
        sender = data.get("from_employee_id", "")
        if kind == "stream_start":
            self.typing_shown.pop(sender, None)
            self.streams[msg_id] = ["", "", data.get("seq")]
            who = "我" if sender == self.me else self.person(sender)
            return f"{local_time(data.get('sent_at'))} {who} 正在回复 #{data.get('seq')}…（/stop 停止）"
        state = self.streams.get(msg_id)
        if state is None:
            return None
        if kind == "stream_delta":
            offset = data.get("offset", 0)
            if offset != len(state[0]):
                return None  # missed a piece: the whole text comes with the message
            state[0] += data.get("delta", "")
            state[1] += data.get("delta", "")
            lines = []
            while "\n" in state[1] or len(state[1]) >= STREAM_LINE:
                cut = state[1].find("\n")
                cut = cut if 0 <= cut < STREAM_LINE else STREAM_LINE
                lines.append("  ┆ " + state[1][:cut])
                state[1] = state[1][cut + 1 if state[1][cut : cut + 1] == "\n" else cut :]
            return "\n".join(lines) or None
        if kind == "stream_cancel":
            self.streams.pop(msg_id, None)
            rest = f"  ┆ {state[1]}\n" if state[1] else ""
            return f"{rest}  ⏹ 回复 #{state[2]} 已停止"
        return None

    def stream_finished(self, message: Message) -> str:
        shown, rest, seq = self.streams.pop(message.msg_id)
        if not message.text.startswith(shown):
            return self.message_line(message)  # replaced by a final text: show it whole
        rest += message.text[len(shown) :]
        tail = "".join(f"  ┆ {line}\n" for line in rest.split("\n") if line)
        return f"{tail}  ✓ 回复 #{seq} 完成"

    def typing_line(self, data: dict) -> str | None:
        sender = data.get("from_employee_id", "")
        if sender == self.me:
            return None
        if not data.get("active", True):
            self.typing_shown.pop(sender, None)
            return None
        status = data.get("status_text") or "正在输入…"
        if self.typing_shown.get(sender) == status:
            return None  # renewed, nothing new to show
        self.typing_shown[sender] = status
        return f"  … {self.person(sender)} {status}"

    def cmd_stop(self, arg: str) -> None:
        if not self.streams:
            self.term.show("没有正在进行的流式回复。")
            return
        msg_id = next(reversed(self.streams))
        self.client.stream_cancel(msg_id)

    def presence_line(self, event: Event) -> str | None:
        employee_id = event.employee_id or ""
        status = event.data.get("status")
        before = self.status.get(employee_id)
        self.status[employee_id] = status
        if before is None or before == status or employee_id == self.me:
            return None  # first sight (retained) or no change
        return f"  {'●' if status == 'online' else '○'} {self.person(employee_id)} {'上线' if status == 'online' else '离线'}"

    def message_line(self, message: Message) -> str:
        when = local_time(message.sent_at)
        sender = "我" if message.from_employee_id == self.me else self.person(message.from_employee_id)
        if message.is_group:
            where = f"[群 {self.group_name(message.conversation.id)}]"
        elif message.from_employee_id == self.me:
            where = f"[我 → {self.person(message.conversation.id)}]"
        else:
            where = "[私聊]"
        text = "（已撤回）" if message.recalled else message.text
        return f"{when} {where} {sender}：{text}"

    # --- helpers ------------------------------------------------------------------------------

    def show_history(self, conversation: Conversation, limit: int, *, acknowledge: bool) -> None:
        page = self.client.history(conversation, limit=limit)
        messages = [Message.from_payload(m, me=self.me) for m in page.get("messages", [])]
        self.term.show(f"—— {self.label(conversation)}：最近 {len(messages)} 条 ——")
        for message in messages:
            self.term.show(f"#{message.seq} {self.message_line(message)}")
        if acknowledge and messages and page.get("last_read_seq", 0) < (messages[-1].seq or 0):
            self.client.read_ack(messages[-1])

    def resolve(self, text: str) -> Conversation:
        text = text.strip()
        if not text:
            raise MChatError("请指定会话：员工 ID、群 ID 或 /list 中的序号")
        if text.isdigit():
            index = int(text)
            if not 1 <= index <= len(self.listed):
                raise MChatError(f"没有序号 {index}，请先 /list")
            return self.listed[index - 1]
        return Conversation.parse(text)

    def set_prompt(self) -> None:
        self.term.prompt = f"[{self.label(self.current)}]> " if self.current else "> "

    def label(self, conversation: Conversation | None, name: str | None = None) -> str:
        if conversation is None:
            return ""
        if conversation.type == "group":
            return f"群 {name or self.group_name(conversation.id)}"
        return name or self.person(conversation.id)

    def person(self, employee_id: str) -> str:
        name = self.names.get(employee_id)
        return f"{name}({employee_id})" if name and name != employee_id else employee_id

    def group_name(self, group_id: str) -> str:
        group = self.client.groups.get(group_id)
        return group["name"] if group and group.get("name") else group_id

    def message_preview(self, payload: dict) -> str:
        text = "（已撤回）" if payload.get("recalled") else content_text(payload.get("content"))
        return text if len(text) <= 40 else text[:39] + "…"

    @staticmethod
    def error_text(exc: MChatError) -> str:
        return f"  ✗ {exc.code} {exc.message}" if exc.code else f"  ✗ {exc.message}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", required=True, help="JSON file with the mqtt_connection (spec 3.3)")
    parser.add_argument("--device", default="term", help="device name: client id is {employee_id}_{device}")
    parser.add_argument(
        "--session-expiry",
        type=int,
        default=24 * 3600,
        help="seconds the broker keeps this device's session and queued messages while offline (0: none)",
    )


def run(args: argparse.Namespace, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    try:
        connection = ConnectionInfo.from_file(args.connection)
    except (OSError, ValueError) as exc:
        print(f"无法读取连接文件 {args.connection}：{exc}", file=sys.stderr)
        return 2
    client = Client(connection, device=args.device, session_expiry=args.session_expiry)
    terminal = Terminal(stdout, interactive=stdin.isatty())
    chat = Chat(client, terminal)
    try:
        client.connect()
    except (ConnectionFailed, ValueError) as exc:
        print(f"连接失败：{exc}", file=sys.stderr)
        return 1
    try:
        chat.start()
        while True:
            try:
                line = terminal.read() if terminal.interactive else _read(stdin)
            except EOFError:
                break
            if not chat.handle_line(line):
                break
    except KeyboardInterrupt:
        pass
    finally:
        chat.stop()
        client.close()
        terminal.show("再见。")
    return 0


def _read(stdin: TextIO) -> str:
    line = stdin.readline()
    if not line:
        raise EOFError
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mchat_sdk chat", description="MChat in a terminal")
    add_arguments(parser)
    return run(parser.parse_args(argv))
