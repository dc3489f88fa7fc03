// What a person does, as actions on the store through the client. Components call these;
// deliveries come in through dispatch.ts only.
import {
  type Content,
  type ConversationRef,
  type DownloadGrant,
  MChatClient,
  MChatError,
  Timeout,
  conversationKey,
  newSeqId,
  parseConversationKey,
} from "../client";
import { perfMark } from "../client/marks";
import { t } from "../i18n";
import {
  applyMessage,
  applySummaries,
  dispatch,
  ensureConversation,
  noteMessageTask,
  noteTask,
  type DispatchHooks,
} from "./dispatch";
import { type MessageItem, Store, messageItem, placeMessage } from "./store";

const PAGE = 30;
/** conversation.list: the first page (a screenful), and the size a page is kept under. */
const FIRST_LIST_PAGE = 15;
const LIST_PAGE_BYTES = 7_000;
const MAX_LIST_PAGES = 200;

/** How many conversations fit in a page of LIST_PAGE_BYTES (UTF-8), judged by the page before. */
export function listPageSize(previous: unknown[]): number {
  if (previous.length === 0) return FIRST_LIST_PAGE;
  const perItem = new TextEncoder().encode(JSON.stringify(previous)).length / previous.length;
  return Math.max(5, Math.min(100, Math.floor(LIST_PAGE_BYTES / perItem)));
}
const SEND_TIMEOUT_MS = 20_000;
/** conversation.typing while I type: renewed after half a person's 6 s indicator (§13.7). */
const TYPING_RENEW_MS = 3_500;
const TYPING_LIFE_MS = 6_000;

function errorText(err: unknown): string {
  if (err instanceof MChatError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

export class ChatApp {
  readonly store = new Store();
  private readonly acking = new Set<string>();
  private readonly downloadUrls = new Map<string, string>();
  private readonly hooks: DispatchHooks;
  private toastTimer: ReturnType<typeof setTimeout> | null = null;
  private typingTimer: ReturnType<typeof setTimeout> | null = null;
  /** Conversation key -> when I last told it I am typing. */
  private readonly typingSent = new Map<string, number>();

  constructor(readonly client: MChatClient) {
    this.hooks = {
      maybeMarkRead: (key) => this.markRead(key),
      groupChanged: (gid) => {
        if (this.store.state.groups.has(gid)) void this.loadGroup(gid);
      },
      fillThread: (key) => void this.fillThread(key),
      typingChanged: () => this.expireTyping(),
    };
    client.on("*", (event) => dispatch(this.store, event, this.hooks));
    client.on("resync", () => this.refreshAfterReconnect());
  }

  get me(): string {
    return this.store.state.me?.employee_id ?? "";
  }

  async start(): Promise<void> {
    await this.client.connect();
    this.store.state.me = this.client.credential?.employee ?? null;
    if (this.store.state.me) this.store.state.employees.set(this.me, this.store.state.me);
    this.store.changed();
    // The list first, org.tree after it: the bridge answers a client's requests in turn, and
    // the directory (every employee) is not needed to show the list (bench/web/REPORT.md).
    await this.loadConversations();
    await this.loadOrg().catch(() => {});
  }

  /** After a reconnect the client emits `resync`; the org tree may have changed too. */
  refreshAfterReconnect(): void {
    void this.loadOrg().catch(() => {});
  }

  toast(text: string): void {
    this.store.state.toast = text;
    this.store.changed();
    if (this.toastTimer) clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => {
      this.store.state.toast = "";
      this.store.changed();
    }, 4000);
  }

  // --- conversations ---------------------------------------------------------------------------

  /** The conversation list, page by page (newest first), each page shown as it comes. Pages
   * are kept under one WebSockets write of the broker (LIST_PAGE_BYTES): Mosquitto 2.0 sends a
   * larger message in 8 KiB pieces, one per turn of its event loop, ~100 ms apart, so one page
   * of 100 conversations (~40 KiB) took a second where 7 pages of 15 take ~50 ms each
   * (bench/web/REPORT.md). The first page is a screenful. */
  async loadConversations(): Promise<void> {
    let cursor: string | undefined;
    let limit = FIRST_LIST_PAGE;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      perfMark(`list-${page}-request`);
      const res = await this.client.conversationList({ limit, ...(cursor ? { cursor } : {}) });
      perfMark(`list-${page}-response`);
      applySummaries(this.store, res.conversations, this.hooks);
      if (!res.next_cursor || res.conversations.length === 0) break;
      cursor = res.next_cursor;
      limit = listPageSize(res.conversations);
    }
    this.store.state.conversationsComplete = true;
    this.store.changed();
  }

  /** Show a conversation: load its newest page (once), move the read position. */
  async open(ref: ConversationRef): Promise<void> {
    const key = conversationKey(ref);
    const s = this.store.state;
    ensureConversation(this.store, ref);
    s.activeKey = key;
    this.store.changed();
    if (ref.type === "group" && !s.groups.has(ref.id)) void this.loadGroup(ref.id);
    const thread = this.store.thread(key);
    if (!thread.loaded && !thread.loading) {
      thread.loading = true;
      this.store.changed();
      try {
        const page = await this.client.history(ref, { limit: PAGE });
        for (const m of page.messages) {
          noteMessageTask(this.store, m);
          placeMessage(thread, messageItem(m));
        }
        thread.hasMoreBefore = page.has_more;
        thread.loaded = true;
        const top = page.messages.reduce((m, x) => Math.max(m, x.seq), 0);
        if (top) this.client.noteSeq(ref, top);
        const c = ensureConversation(this.store, ref);
        c.lastSeq = Math.max(c.lastSeq, page.last_seq);
        c.lastReadSeq = Math.max(c.lastReadSeq, page.last_read_seq);
        c.unread = Math.max(0, c.lastSeq - c.lastReadSeq);
        const last = page.messages[page.messages.length - 1];
        if (last && (!c.lastMessage || c.lastMessage.seq <= last.seq)) c.lastMessage = last;
        if (page.last_seq > top) void this.fillThread(key);
      } catch (err) {
        thread.error = errorText(err);
      } finally {
        thread.loading = false;
        this.store.changed();
      }
    }
    this.markRead(key);
  }

  close(): void {
    this.store.state.activeKey = null;
    this.store.changed();
  }

  async loadOlder(key: string): Promise<void> {
    const ref = parseConversationKey(key);
    const thread = this.store.state.threads.get(key);
    if (!ref || !thread || !thread.hasMoreBefore || thread.loadingOlder) return;
    const oldest = thread.messages.find((m) => m.seq !== null)?.seq;
    if (!oldest) return;
    thread.loadingOlder = true;
    this.store.changed();
    try {
      const page = await this.client.history(ref, { beforeSeq: oldest, limit: PAGE });
      for (const m of page.messages) {
        noteMessageTask(this.store, m);
        placeMessage(thread, messageItem(m));
      }
      thread.hasMoreBefore = page.has_more;
    } catch (err) {
      this.toast(t("error_generic", { error: errorText(err) }));
    } finally {
      thread.loadingOlder = false;
      this.store.changed();
    }
  }

  /** Fetch what the thread lacks after its newest message (after_seq). */
  async fillThread(key: string): Promise<void> {
    const ref = parseConversationKey(key);
    const thread = this.store.state.threads.get(key);
    if (!ref || !thread?.loaded) return;
    let after = thread.messages.reduce((m, x) => Math.max(m, x.seq ?? 0), 0);
    for (let i = 0; i < 20; i++) {
      const page = await this.client.history(ref, { afterSeq: after, limit: 100 }).catch(() => null);
      if (!page) return;
      for (const m of page.messages) applyMessage(this.store, ref, m, this.hooks);
      const top = page.messages.reduce((m, x) => Math.max(m, x.seq), after);
      if (top > after) this.client.noteSeq(ref, top);
      after = top;
      if (!page.has_more || page.messages.length === 0) break;
    }
  }

  setVisible(visible: boolean): void {
    this.store.state.visible = visible;
    this.store.changed();
    if (visible && this.store.state.activeKey) this.markRead(this.store.state.activeKey);
  }

  /** Move my read position to the newest message of a conversation on screen. */
  markRead(key: string): void {
    const s = this.store.state;
    if (key !== s.activeKey || !s.visible || this.acking.has(key)) return;
    const c = s.conversations.get(key);
    const thread = s.threads.get(key);
    if (!c || !thread?.loaded) return;
    const newest = [...thread.messages].reverse().find((m) => m.seq !== null && m.msgId);
    if (!newest || newest.seq === null || newest.seq <= c.lastReadSeq) return;
    const seq = newest.seq;
    c.lastReadSeq = seq;
    c.unread = Math.max(0, c.lastSeq - c.lastReadSeq);
    this.store.changed();
    this.acking.add(key);
    this.client
      .readAck(c.ref, newest.msgId as string)
      .catch(() => {})
      .finally(() => {
        this.acking.delete(key);
        const latest = [...(s.threads.get(key)?.messages ?? [])].reverse().find((m) => m.seq !== null);
        if (latest?.seq && latest.seq > seq) this.markRead(key);
      });
  }

  // --- sending ---------------------------------------------------------------------------------

  async sendText(key: string, text: string): Promise<void> {
    if (!text.trim()) return;
    this.typingSent.delete(key); // the message itself ends my indicator at the others
    await this.sendContent(key, text);
  }

  private async sendContent(key: string, content: Content, retryOf?: MessageItem): Promise<void> {
    const ref = parseConversationKey(key);
    if (!ref) return;
    const thread = this.store.thread(key);
    const seqId = retryOf?.seqId ?? newSeqId();
    let item = retryOf;
    if (item) {
      item.status = "pending";
      item.error = undefined;
    } else {
      item = {
        kind: "message",
        id: seqId,
        msgId: null,
        seq: null,
        from: this.me,
        content,
        sentAt: new Date().toISOString(),
        recalled: false,
        status: "pending",
        seqId,
      };
      placeMessage(thread, item);
    }
    const c = ensureConversation(this.store, ref);
    c.lastActivityAt = new Date().toISOString();
    // Publish first, then show the pending message: the render runs in this task's microtasks
    // and would otherwise hold the publish back by the time it takes (Enter -> shown).
    const sending = this.client.send(ref, content, { seqId, timeoutMs: SEND_TIMEOUT_MS, retries: 3 });
    this.store.changed();
    const find = () => thread.messages.find((m) => m.id === seqId);
    try {
      const data = await sending;
      const current = find();
      if (current) {
        thread.messages.splice(thread.messages.indexOf(current), 1);
        placeMessage(thread, {
          ...current,
          msgId: data.msg_id,
          seq: data.seq,
          sentAt: data.sent_at,
          status: "sent",
        });
      }
      applyMessage(
        this.store,
        ref,
        {
          msg_id: data.msg_id,
          from_employee_id: this.me,
          to_employee_id: ref.type === "private" ? ref.id : undefined,
          group_id: ref.type === "group" ? ref.id : undefined,
          content,
          sent_at: data.sent_at,
          seq: data.seq,
        },
        this.hooks,
      );
    } catch (err) {
      const current = find();
      if (current) {
        if (err instanceof Timeout) {
          current.status = "agent_timeout";
        } else {
          current.status = "failed";
          current.error = errorText(err);
        }
      }
      this.store.changed();
    }
  }

  // --- streams, tasks, typing (§13) ----------------------------------------------------------

  /** Stop a stream addressed to me (or in a group I own or administer). */
  async stopStream(item: MessageItem): Promise<void> {
    if (!item.msgId || !item.streaming) return;
    try {
      await this.client.streamCancel(item.msgId);
      // The stream_cancel delivery brings the text it keeps; until then it is stopped here.
      item.streaming = false;
      item.canceled = true;
      this.store.changed();
    } catch (err) {
      this.toast(t("error_generic", { error: errorText(err) }));
    }
  }

  /** Cancel my task (a message to an agent) while it is open. */
  async cancelTask(msgId: string): Promise<void> {
    try {
      const data = await this.client.taskUpdate(msgId, "canceled");
      noteTask(this.store, msgId, data.state, data.status_text, data.updated_at);
      this.store.changed();
    } catch (err) {
      this.toast(t("error_generic", { error: errorText(err) }));
    }
  }

  /** My draft in a conversation changed: tell the others I am typing (at most every 3.5 s),
   * or that I stopped when the draft was emptied. Agents are not told; failures are ignored. */
  draftChanged(key: string, text: string): void {
    const ref = parseConversationKey(key);
    const c = this.store.state.conversations.get(key);
    if (!ref || !c || c.dismissed || !this.client.connected) return;
    // A private conversation exists only after its first message (else 404).
    if (ref.type === "private" && (c.lastSeq === 0 || this.store.state.employees.get(ref.id)?.is_ai_agent)) return;
    const now = Date.now();
    const last = this.typingSent.get(key);
    if (text.trim()) {
      if (last !== undefined && now - last < TYPING_RENEW_MS) return;
      this.typingSent.set(key, now);
      this.client.typing(ref).catch(() => this.typingSent.delete(key));
    } else if (last !== undefined) {
      this.typingSent.delete(key);
      if (now - last < TYPING_LIFE_MS) this.client.typing(ref, { active: false }).catch(() => {});
    }
  }

  /** Drop typing indicators when they expire (one timer for the soonest). */
  private expireTyping(): void {
    if (this.typingTimer) clearTimeout(this.typingTimer);
    this.typingTimer = null;
    const next = this.store.pruneTyping();
    if (next !== null) this.typingTimer = setTimeout(() => this.expireTyping(), Math.max(50, next - Date.now() + 20));
  }

  retry(key: string, item: MessageItem): void {
    if (item.status !== "failed" || item.content === null) return;
    void this.sendContent(key, item.content, item);
  }

  async recall(item: MessageItem): Promise<void> {
    if (!item.msgId) return;
    try {
      await this.client.recall(item.msgId);
      item.recalled = true;
      item.content = null;
      this.store.changed();
    } catch (err) {
      this.toast(t("error_generic", { error: errorText(err) }));
    }
  }

  /** Upload a picked or pasted file, then send it as an image or a file message. */
  async sendFile(key: string, file: File): Promise<void> {
    const isImage = /^image\/(png|jpeg|gif|webp)$/.test(file.type);
    const type = file.type || "application/octet-stream";
    this.toast(t("uploading", { name: file.name || "image" }));
    try {
      const name = file.name || `image-${Date.now()}.png`;
      const grant = await this.client.upload(file, name, type);
      let content: Content;
      if (isImage) {
        let width = 1;
        let height = 1;
        try {
          const bitmap = await createImageBitmap(file);
          width = Math.max(1, bitmap.width);
          height = Math.max(1, bitmap.height);
          bitmap.close();
        } catch {
          /* unknown size: 1x1 keeps the message valid */
        }
        content = { type: "image", key: grant.key, width, height };
      } else {
        content = { type: "file", key: grant.key, name, size: file.size };
      }
      this.store.state.toast = "";
      await this.sendContent(key, content);
    } catch (err) {
      this.toast(t("upload_failed", { error: errorText(err) }));
    }
  }

  /** A download URL for an uploaded object (one-time URLs: cached for the page's <img>). */
  async downloadUrl(key: string, fresh = false): Promise<DownloadGrant["url"]> {
    const cached = this.downloadUrls.get(key);
    if (cached && !fresh) return cached;
    const grant = await this.client.fileDownloadUrl(key);
    this.downloadUrls.set(key, grant.url);
    return grant.url;
  }

  // --- groups ----------------------------------------------------------------------------------

  async loadGroup(groupId: string): Promise<void> {
    try {
      const info = await this.client.groupInfo(groupId);
      this.store.state.groups.set(groupId, info);
      const c = this.store.state.conversations.get(conversationKey({ type: "group", id: groupId }));
      if (c) c.name = info.name;
      for (const m of info.members) {
        if (!this.store.state.employees.has(m.employee_id)) {
          this.store.state.employees.set(m.employee_id, {
            employee_id: m.employee_id,
            name: m.name,
            is_ai_agent: m.is_ai_agent,
          });
        }
      }
    } catch {
      this.store.state.groups.delete(groupId);
    }
    this.store.changed();
  }

  async createGroup(name: string, memberIds: string[]): Promise<string> {
    const g = await this.client.groupCreate(name, memberIds);
    const ref: ConversationRef = { type: "group", id: g.group_id };
    const c = ensureConversation(this.store, ref, g.name);
    c.name = g.name;
    c.lastActivityAt = new Date().toISOString();
    this.client.groups.set(g.group_id, { group_id: g.group_id, name: g.name });
    await this.client.syncGroups().catch(() => []);
    await this.loadGroup(g.group_id);
    return conversationKey(ref);
  }

  async renameGroup(groupId: string, name: string): Promise<void> {
    await this.client.groupUpdate(groupId, { name });
    await this.loadGroup(groupId);
  }

  async addMembers(groupId: string, ids: string[]): Promise<void> {
    await this.client.groupMemberAdd(groupId, ids);
    await this.loadGroup(groupId);
  }

  async removeMember(groupId: string, id: string): Promise<void> {
    await this.client.groupMemberRemove(groupId, [id]);
    await this.loadGroup(groupId);
  }

  async leaveGroup(groupId: string): Promise<void> {
    await this.client.groupLeave(groupId);
    const c = this.store.state.conversations.get(conversationKey({ type: "group", id: groupId }));
    if (c) c.dismissed = true;
    this.store.state.groups.delete(groupId);
    this.store.changed();
  }

  challenge() {
    return this.client.challenge();
  }

  async dismissGroup(groupId: string, challenge: { challenge_id: string; token: string }): Promise<void> {
    await this.client.groupDismiss(groupId, challenge);
    const c = this.store.state.conversations.get(conversationKey({ type: "group", id: groupId }));
    if (c) c.dismissed = c.groupDismissed = true;
    this.store.changed();
  }

  // --- organisation and agents -----------------------------------------------------------------

  async loadOrg(): Promise<void> {
    const s = this.store.state;
    perfMark("org-request");
    const tree = await this.client.orgTree(s.orgVersion ?? undefined);
    perfMark("org-response");
    if (!tree.unchanged) {
      s.departments = tree.departments ?? [];
      for (const e of tree.employees ?? []) s.employees.set(e.employee_id, { ...s.employees.get(e.employee_id), ...e });
      for (const c of s.conversations.values()) {
        if (c.ref.type === "private" && s.employees.has(c.ref.id)) c.name = s.employees.get(c.ref.id)?.name ?? c.name;
      }
    }
    s.orgVersion = tree.version;
    this.store.changed();
  }

  /** An agent's Agent Card (`agent.card`): its skills with descriptions and examples. Once per
   * page unless `fresh`; the directory shows it when a person opens the agent's skills. */
  async loadAgentCard(employeeId: string, fresh = false): Promise<void> {
    const cards = this.store.state.agentCards;
    const held = cards.get(employeeId);
    if (held && (held.loading || (!fresh && "card" in held))) return;
    cards.set(employeeId, { loading: true });
    this.store.changed();
    try {
      cards.set(employeeId, { loading: false, card: await this.client.agentCard(employeeId) });
    } catch (err) {
      cards.set(employeeId, { loading: false, error: errorText(err) });
    }
    this.store.changed();
  }

  async loadAgents(skill?: string): Promise<void> {
    const s = this.store.state;
    try {
      const res = await this.client.agentCapabilityList(skill || undefined);
      s.agents = res.agent_profiles;
      s.agentsError = "";
    } catch (err) {
      s.agentsError = errorText(err);
    }
    this.store.changed();
  }
}
