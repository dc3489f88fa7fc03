// The one delivery dispatcher: every event from the client goes through `dispatch`, which
// updates the store (Zulip's server_events_dispatch style). No component listens to the client.
import {
  type ClientEvent,
  type ConversationRef,
  type ConversationSummary,
  FINAL_TASK_STATES,
  type MessagePayload,
  type Notification,
  type TaskState,
  type TypingEvent,
  conversationKey,
} from "../client";
import { t } from "../i18n";
import { type Conversation, type Store, conversationName, messageItem, placeMessage } from "./store";

export interface DispatchHooks {
  /** A conversation got newer messages while it is on screen: move the read position. */
  maybeMarkRead(key: string): void;
  /** The group list or a group's members changed. */
  groupChanged(groupId: string): void;
  /** A conversation the page shows has newer messages on the server than it holds. */
  fillThread(key: string): void;
  /** A typing indicator was set: expire it in time. */
  typingChanged(): void;
}

/** Keep a task's state unless what is held is final or newer (states arrive from deliveries
 * and from history pages, in any order). */
export function noteTask(store: Store, msgId: string, state: TaskState, statusText: string | null | undefined, updatedAt: string): void {
  const old = store.state.tasks.get(msgId);
  if (old && (FINAL_TASK_STATES.includes(old.state) || old.updatedAt > updatedAt)) return;
  store.state.tasks.set(msgId, { state, statusText: statusText ?? "", updatedAt });
}

/** The task fields of a message from history or a conversation list. */
export function noteMessageTask(store: Store, m: MessagePayload): void {
  if (m.task_state) noteTask(store, m.msg_id, m.task_state, m.task_status_text, m.task_updated_at ?? "");
}

const PERSON_TYPING_MS = 6_000;
const AGENT_STATUS_MAX_MS = 120_000;
const AGENT_STATUS_USUAL_MS = 30_000;

/** When an indicator ends on this page's clock. `expires_at` is the server's; a clock that is
 * off by more than the indicator's life falls back to its usual length from now. */
function typingExpiry(d: TypingEvent, now: number): number {
  const max = d.is_ai_agent ? AGENT_STATUS_MAX_MS : PERSON_TYPING_MS;
  const usual = d.is_ai_agent ? AGENT_STATUS_USUAL_MS : PERSON_TYPING_MS;
  const left = Date.parse(d.expires_at) - now;
  return now + (Number.isFinite(left) && left > 0 && left <= max + 1_000 ? left : usual);
}

function applyTyping(store: Store, key: string, d: TypingEvent, hooks: DispatchHooks): void {
  if (d.from_employee_id === store.state.me?.employee_id) return; // my own, on the group topic
  let who = store.state.typing.get(key);
  if (!d.active) {
    if (who?.delete(d.from_employee_id)) store.changed();
    return;
  }
  // A person's indicator issued before their latest message here (it was overtaken on the way,
  // e.g. by another bridge process) is already over: the message ended it.
  const last = store.state.conversations.get(key)?.lastMessage;
  if (
    !d.is_ai_agent &&
    last?.from_employee_id === d.from_employee_id &&
    Date.parse(d.expires_at) - PERSON_TYPING_MS < Date.parse(last.sent_at)
  ) {
    return;
  }
  if (!who) {
    who = new Map();
    store.state.typing.set(key, who);
  }
  who.set(d.from_employee_id, {
    employeeId: d.from_employee_id,
    statusText: d.status_text ?? "",
    isAgent: Boolean(d.is_ai_agent),
    expiresAt: typingExpiry(d, Date.now()),
  });
  hooks.typingChanged();
  store.changed();
}

/** A message (or a stream's start) from someone ends their indicator in that conversation. */
function clearTyping(store: Store, key: string, employeeId: string): void {
  const who = store.state.typing.get(key);
  if (who?.delete(employeeId) && who.size === 0) store.state.typing.delete(key);
}

/** New text of an open stream, or its canceled form: the thread's entry and the list's preview. */
function updateStream(store: Store, key: string, msgId: string, fields: { content: string; streaming: boolean; canceled?: boolean }): void {
  const item = store.state.threads.get(key)?.messages.find((m) => m.msgId === msgId);
  if (item && !(item.stream && !item.streaming && fields.streaming)) {
    item.content = fields.content;
    item.stream = true;
    item.streaming = fields.streaming;
    if (fields.canceled) item.canceled = true;
  }
  const c = store.state.conversations.get(key);
  if (c?.lastMessage?.msg_id === msgId && c.lastMessage.streaming === true) {
    c.lastMessage = { ...c.lastMessage, content: fields.content, stream: true, streaming: fields.streaming, ...(fields.canceled ? { canceled: true } : {}) };
  }
  store.changed();
}

export function refOfSummary(c: ConversationSummary): ConversationRef {
  return c.conversation_type === "group"
    ? { type: "group", id: c.group_id ?? "" }
    : { type: "private", id: c.peer_employee_id ?? "" };
}

export function conversationFromSummary(store: Store, s: ConversationSummary): Conversation {
  const ref = refOfSummary(s);
  const key = conversationKey(ref);
  const old = store.state.conversations.get(key);
  return {
    key,
    ref,
    name: s.name || conversationName(store, ref),
    dismissed: Boolean(s.dismissed),
    groupDismissed: Boolean(s.dismissed),
    lastSeq: Math.max(s.last_seq, old?.lastSeq ?? 0),
    lastReadSeq: Math.max(s.last_read_seq, old?.lastReadSeq ?? 0),
    unread: 0,
    lastMessage: s.last_message ?? old?.lastMessage ?? null,
    lastActivityAt: s.last_activity_at ?? old?.lastActivityAt ?? "",
    peerReadSeq: old?.peerReadSeq ?? 0,
  };
}

function withUnread(c: Conversation): Conversation {
  c.unread = Math.max(0, c.lastSeq - c.lastReadSeq);
  return c;
}

/** The conversation for a key, created (empty) if the page did not know it yet. */
export function ensureConversation(store: Store, ref: ConversationRef, name?: string): Conversation {
  const key = conversationKey(ref);
  let c = store.state.conversations.get(key);
  if (!c) {
    c = {
      key,
      ref,
      name: name ?? conversationName(store, ref),
      dismissed: false,
      lastSeq: 0,
      lastReadSeq: 0,
      unread: 0,
      lastMessage: null,
      lastActivityAt: "",
      peerReadSeq: 0,
    };
    store.state.conversations.set(key, c);
  }
  return c;
}

export function applySummaries(store: Store, list: ConversationSummary[], hooks: DispatchHooks): void {
  for (const s of list) {
    if (s.last_message) noteMessageTask(store, s.last_message);
    const c = withUnread(conversationFromSummary(store, s));
    store.state.conversations.set(c.key, c);
    const thread = store.state.threads.get(c.key);
    const top = thread?.messages.reduce((m, x) => Math.max(m, x.seq ?? 0), 0) ?? 0;
    if (thread?.loaded && c.lastSeq > top) hooks.fillThread(c.key);
  }
  store.state.conversationsLoaded = true;
  store.changed();
}

export function applyMessage(store: Store, ref: ConversationRef, m: MessagePayload, hooks: DispatchHooks): void {
  const me = store.state.me?.employee_id;
  const key = conversationKey(ref);
  const c = ensureConversation(store, ref);
  clearTyping(store, key, m.from_employee_id);
  noteMessageTask(store, m);
  if (m.seq >= c.lastSeq) {
    c.lastSeq = m.seq;
    c.lastMessage = m;
    c.lastActivityAt = m.sent_at || new Date().toISOString();
  }
  if (m.from_employee_id === me) c.lastReadSeq = Math.max(c.lastReadSeq, m.seq);
  withUnread(c);
  const thread = store.state.threads.get(key);
  // A thread whose first page is still loading takes the message too (the page merges by msg_id).
  if (thread && (thread.loaded || thread.loading)) {
    const item = messageItem(m);
    // My own message from this page: the pending entry becomes the sent message.
    if (m.from_employee_id === me && !thread.messages.some((x) => x.msgId === m.msg_id)) {
      const pending = thread.messages.find(
        (x) => x.msgId === null && x.seq === null && JSON.stringify(x.content) === JSON.stringify(m.content),
      );
      if (pending) {
        thread.messages.splice(thread.messages.indexOf(pending), 1);
        placeMessage(thread, { ...item, id: pending.id, seqId: pending.seqId, status: pending.status === "failed" ? "sent" : pending.status === "pending" ? "pending" : pending.status });
        store.changed();
        return;
      }
    }
    placeMessage(thread, item);
  }
  if (m.from_employee_id !== me) hooks.maybeMarkRead(key);
  store.changed();
}

function recallApplies(store: Store, key: string, msgId: string, recalledAt: string): void {
  const thread = store.state.threads.get(key);
  const item = thread?.messages.find((m) => m.msgId === msgId);
  if (item) {
    item.recalled = true;
    item.content = null;
  }
  const c = store.state.conversations.get(key);
  if (c?.lastMessage?.msg_id === msgId) {
    c.lastMessage = { ...c.lastMessage, content: null, recalled: true, recalled_at: recalledAt };
  }
}

function names(store: Store, ids: unknown): string {
  if (!Array.isArray(ids)) return "";
  return ids.map((id) => (id === store.state.me?.employee_id ? t("you") : store.nameOf(String(id)))).join("、");
}

export function noticeText(store: Store, n: Notification): string {
  const b = n.body ?? {};
  const me = store.state.me?.employee_id;
  const who = (id: unknown) => (id ? (id === me ? t("you") : store.nameOf(String(id))) : t("admin_console"));
  switch (n.type) {
    case "member_joined": {
      const ids = ((b.member_ids ?? []) as string[]).filter((id) => id !== b.inviter_id);
      if (ids.length === 0) return t("notice_created", { inviter: who(b.inviter_id) });
      return t("notice_joined", { inviter: who(b.inviter_id), names: names(store, ids) });
    }
    case "member_removed": {
      const ids = (b.member_ids ?? []) as string[];
      const left = ids.length === 1 && ids[0] === b.operator_id;
      return left
        ? t("notice_left", { names: names(store, ids) })
        : t("notice_removed", { operator: who(b.operator_id), names: names(store, ids) });
    }
    case "group_renamed":
      return t("notice_renamed", { operator: who(b.operator_id), name: String(b.group_name ?? "") });
    case "group_dismissed":
      return t("notice_dismissed", { operator: who(b.operator_id) });
    default:
      return n.title || n.type;
  }
}

function applyNotification(store: Store, n: Notification, hooks: DispatchHooks): void {
  const gid = n.body?.group_id;
  if (!gid) return;
  const ref: ConversationRef = { type: "group", id: gid };
  const key = conversationKey(ref);
  const me = store.state.me?.employee_id ?? "";
  const aboutMe = (n.body.member_ids ?? []).includes(me);
  const c = ensureConversation(store, ref, n.body.group_name);
  if (n.body.group_name) c.name = n.body.group_name;
  if (n.type === "member_joined" && aboutMe && !c.lastActivityAt) c.lastActivityAt = n.created_at;
  if (n.type === "group_dismissed") c.dismissed = c.groupDismissed = true;
  if (n.type === "member_removed" && aboutMe) c.dismissed = true;
  const g = store.state.groups.get(gid);
  if (g && n.body.group_name) g.name = n.body.group_name;
  const thread = store.thread(key);
  if (!thread.notices.some((x) => x.id === n.notify_id)) {
    thread.notices.push({ kind: "notice", id: n.notify_id, afterSeq: c.lastSeq, text: noticeText(store, n), at: n.created_at });
  }
  hooks.groupChanged(gid);
  store.changed();
}

export function dispatch(store: Store, event: ClientEvent, hooks: DispatchHooks): void {
  const s = store.state;
  switch (event.kind) {
    case "connection":
      s.connection = event.state;
      s.connectionError = event.error ?? "";
      if (event.state === "connected") s.everConnected = true;
      store.changed();
      return;
    case "resync":
      applySummaries(store, event.conversations, hooks);
      return;
    case "message":
      applyMessage(store, event.conversation, event.message, hooks);
      return;
    case "recall": {
      if (!event.conversation) return;
      recallApplies(store, conversationKey(event.conversation), event.data.msg_id, event.data.recalled_at);
      store.changed();
      return;
    }
    case "receipt": {
      const d = event.data;
      if (d.conversation_type === "private") {
        const c = s.conversations.get(conversationKey({ type: "private", id: d.reader_id }));
        if (c) c.peerReadSeq = Math.max(c.peerReadSeq, d.seq);
      } else {
        const th = s.threads.get(conversationKey({ type: "group", id: d.group_id }));
        const item = th?.messages.find((m) => m.msgId === d.msg_id);
        if (item) {
          item.readCount = Math.max(item.readCount ?? 0, d.read_count);
          item.memberCount = d.member_count;
        }
      }
      store.changed();
      return;
    }
    case "read_position": {
      if (!event.conversation) return;
      const c = s.conversations.get(conversationKey(event.conversation));
      if (c) {
        c.lastReadSeq = Math.max(c.lastReadSeq, event.data.last_read_seq);
        withUnread(c);
        store.changed();
      }
      return;
    }
    case "notification":
      applyNotification(store, event.data, hooks);
      return;
    case "status":
      if (event.data) s.presence.set(event.employeeId, event.data);
      else s.presence.delete(event.employeeId);
      store.changed();
      return;
    case "profile": {
      const p = event.data.profile ?? {};
      const old = s.employees.get(event.employeeId);
      if (event.data.event === "deactivated" || p.is_active === false) {
        s.employees.delete(event.employeeId);
      } else {
        s.employees.set(event.employeeId, {
          ...(old ?? { employee_id: event.employeeId, name: event.employeeId }),
          name: typeof p.name === "string" ? p.name : (old?.name ?? event.employeeId),
          department_id: typeof p.department_id === "string" ? p.department_id : (old?.department_id ?? null),
          is_ai_agent: typeof p.is_ai_agent === "boolean" ? p.is_ai_agent : old?.is_ai_agent,
        });
      }
      store.changed();
      return;
    }
    case "system": {
      const n = event.data;
      const body = n.body ?? {};
      s.systemNotices.unshift({
        id: n.notify_id,
        title: n.title ?? "",
        text: typeof body.text === "string" ? body.text : "",
        at: n.created_at,
      });
      s.toast = n.title ?? "";
      store.changed();
      return;
    }
    case "stream_delta":
      updateStream(store, conversationKey(event.conversation), event.data.msg_id, { content: event.text, streaming: true });
      return;
    case "stream_cancel":
      updateStream(store, conversationKey(event.conversation), event.data.msg_id, {
        content: event.data.content,
        streaming: false,
        canceled: true,
      });
      return;
    case "task_status": {
      const d = event.data;
      noteTask(store, d.msg_id, d.state, d.status_text, d.updated_at ?? "");
      store.changed();
      return;
    }
    case "typing":
      applyTyping(store, conversationKey(event.conversation), event.data, hooks);
      return;
    case "other":
      return;
  }
}
