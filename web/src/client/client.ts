// MChatClient: one web (or Node.js) device of one employee, the TypeScript counterpart of
// mchat_sdk.Client. No DOM here: it runs in the browser and in Node.js alike.
//
// - connects with a short-lived credential (a provider function; webCredentialProvider for the
//   browser) and refreshes it before it expires; every reconnect uses a fresh one;
// - request/response correlation by seq_id, per-request timeouts, retries that reuse the seq_id
//   (the server executes a request once, docs/protocol.md §1.2), requests still waiting are
//   published again after a reconnect;
// - typed deliveries (`on(kind, fn)`), messages handed out per conversation in seq order without
//   repeats, gaps filled with msg.history after_seq;
// - reconnect with exponential back-off, resubscribe (inbox, groups, presence, profiles,
//   system), catch-up with conversation.list + after_seq, without duplicates;
// - streamed messages (§13): an open stream is a `message` with `streaming: true` at its seq,
//   `stream_delta` events carry its whole text so far (missed deltas fetched), the final
//   message comes again with `update: true`.
import { CredentialError } from "./credential";
import {
  GROUP_PREFIX,
  INBOX_PREFIX,
  PROFILE_PREFIX,
  REQUEST_PREFIX,
  RESPONSE_PREFIX,
  STATUS_PREFIX,
  SYSTEM_TOPIC,
  classify,
  messageConversation,
} from "./deliveries";
import { ConnectionClosed, MChatError, RateLimited, RequestTimeout, errorFor } from "./errors";
import { perfMark } from "./marks";
import { Sequencer } from "./sequencer";
import { StreamTracker } from "./streams";
import { ConnectRefused, type Transport, type TransportFactory } from "./transport";
import {
  type AgentCard,
  type AgentProfile,
  type Content,
  type ConnectionState,
  type ConversationRef,
  type ConversationSummary,
  type Credential,
  type Delivery,
  type DownloadGrant,
  type GroupInfo,
  type GroupSummary,
  type HistoryPage,
  type MessagePayload,
  type OrgTree,
  type Response,
  type TaskState,
  type UploadGrant,
  conversationFields,
  conversationKey,
} from "./types";

/** What `on()` hands out: the deliveries, with these differences. A stream's start is handed
 * out as a `message` with `streaming: true` (it takes its seq in order); a `message` whose seq
 * was handed out before (a stream's final form) has `update: true`; a `stream_delta` carries
 * `text`, the stream's whole text so far. */
export type ClientEvent =
  | Exclude<Delivery, { kind: "message" | "stream_delta" | "stream_start" }>
  | (Extract<Delivery, { kind: "message" }> & { update?: boolean })
  | (Extract<Delivery, { kind: "stream_delta" }> & { text: string })
  | { kind: "connection"; state: ConnectionState; reconnect: boolean; error?: string; retryInMs?: number }
  | { kind: "resync"; conversations: ConversationSummary[] };

export type ClientEventKind = ClientEvent["kind"];
type EventOf<K extends ClientEventKind> = Extract<ClientEvent, { kind: K }>;

export interface RequestOptions {
  /** Reuse a seq_id (a retry of an earlier request); a new one otherwise. */
  seqId?: string;
  timeoutMs?: number;
  /** How many times a timeout or a 429 is retried, with the same seq_id. */
  retries?: number;
}

export interface ClientOptions {
  /** Returns a fresh credential (given the previous one, to keep the device id). */
  credentials: (previous?: Credential) => Promise<Credential>;
  /** How to open an MQTT connection (mqttTransport, or a fake in tests). */
  transport: TransportFactory;
  requestTimeoutMs?: number;
  /** Default retries of `request` (timeouts and 429), reusing the seq_id. */
  retries?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** How long a gap in a conversation's seq is waited for before msg.history fills it. */
  gapWaitMs?: number;
  /** Subscribe to group topics (group.list, membership notifications). Default true. */
  trackGroups?: boolean;
  /** Publish a retained online status and an offline Will. Default true. */
  presence?: boolean;
  random?: () => number;
  now?: () => number;
}

interface Pending {
  action: string;
  topic: string;
  body: string;
  timeoutMs: number;
  retriesLeft: number;
  timer: ReturnType<typeof setTimeout> | null;
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
}

const SEQ_ID_RE = /^[!-"$-*,-.0-~]{1,128}$/;

let seqCounter = 0;
export function newSeqId(): string {
  const c = globalThis.crypto as Crypto | undefined;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  seqCounter += 1;
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${seqCounter}`;
}

export class MChatClient {
  state: ConnectionState = "idle";
  credential: Credential | null = null;
  /** Groups followed (topics subscribed), from group.list and membership notifications. */
  readonly groups = new Map<string, { group_id: string; name: string }>();

  private readonly opts: Required<Omit<ClientOptions, "credentials" | "transport">> &
    Pick<ClientOptions, "credentials" | "transport">;
  private transport: Transport | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Map<string, Set<(e: ClientEvent) => void>>();
  private readonly sequencers = new Map<string, Sequencer>();
  private readonly streams: StreamTracker;
  private closed = false;
  private attempt = 0;
  private everConnected = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private connecting: Promise<void> | null = null;

  constructor(options: ClientOptions) {
    this.opts = {
      requestTimeoutMs: 15_000,
      retries: 1,
      backoffInitialMs: 500,
      backoffMaxMs: 30_000,
      gapWaitMs: 400,
      trackGroups: true,
      presence: true,
      random: Math.random,
      now: Date.now,
      ...options,
    };
    this.streams = new StreamTracker({
      text: (conversation, data, text) => this.emit({ kind: "stream_delta", topic: this.topicOf(conversation), conversation, data, text }),
      fetch: async (conversation, seq) => {
        // Not this.history(): its pages are normalised by this very tracker.
        const fields = { ...conversationFields(conversation), after_seq: seq - 1, limit: 1 };
        const page = await this.request<HistoryPage>("msg.history", fields);
        return page.messages.find((m) => m.seq === seq);
      },
      ended: (conversation, message) =>
        this.emit({ kind: "message", topic: this.topicOf(conversation), conversation, message, recovered: true, update: true }),
    });
  }

  private topicOf(c: ConversationRef): string {
    return c.type === "group" ? GROUP_PREFIX + c.id : INBOX_PREFIX + this.employeeId;
  }

  get employeeId(): string {
    return this.credential?.employee.employee_id ?? "";
  }

  get clientId(): string {
    return this.credential?.client_id ?? "";
  }

  get connected(): boolean {
    return this.state === "connected";
  }

  // --- events ----------------------------------------------------------------------------------

  /** Call `fn` for every event of `kind` ("*" for all); returns a function that removes it. */
  on<K extends ClientEventKind>(kind: K, fn: (e: EventOf<K>) => void): () => void;
  on(kind: "*", fn: (e: ClientEvent) => void): () => void;
  on(kind: string, fn: (e: never) => void): () => void {
    const set = this.listeners.get(kind) ?? new Set();
    set.add(fn as (e: ClientEvent) => void);
    this.listeners.set(kind, set);
    return () => set.delete(fn as (e: ClientEvent) => void);
  }

  private emit(event: ClientEvent): void {
    for (const key of [event.kind, "*"]) {
      for (const fn of [...(this.listeners.get(key) ?? [])]) {
        try {
          fn(event);
        } catch (err) {
          console.error("mchat: listener failed", err);
        }
      }
    }
  }

  private setState(state: ConnectionState, extra: { error?: string; retryInMs?: number } = {}): void {
    this.state = state;
    this.emit({ kind: "connection", state, reconnect: this.everConnected, ...extra });
  }

  // --- lifecycle -------------------------------------------------------------------------------

  /** Connect (fetching a credential first). Rejects if the first attempt fails; later drops
   * reconnect by themselves until `close()` or a refused credential. */
  connect(): Promise<void> {
    this.closed = false;
    if (!this.connecting) {
      this.connecting = this.open().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  /** Disconnect for good (sign-out): pending requests fail with ConnectionClosed. */
  async close(): Promise<void> {
    this.closed = true;
    this.clearTimers();
    const t = this.transport;
    this.transport = null;
    if (t) {
      if (this.opts.presence) {
        await t.publish(this.statusTopic, this.statusPayload("offline"), { qos: 1, retain: true }).catch(() => {});
      }
      await t.end().catch(() => {});
    }
    for (const [seqId, p] of this.pending) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(new ConnectionClosed(p.action, seqId));
    }
    this.pending.clear();
    this.setState("closed");
  }

  private clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.reconnectTimer = null;
    this.refreshTimer = null;
  }

  private get statusTopic(): string {
    return STATUS_PREFIX + this.employeeId;
  }

  private statusPayload(status: "online" | "offline"): string {
    const device = this.clientId.slice(this.employeeId.length + 1);
    return JSON.stringify({
      status,
      updated_at: new Date(this.opts.now()).toISOString(),
      device,
      client_id: this.clientId,
    });
  }

  private async freshCredential(): Promise<Credential> {
    try {
      const c = await this.opts.credentials(this.credential ?? undefined);
      this.credential = c;
      this.scheduleRefresh();
      return c;
    } catch (err) {
      // A network error with a credential that is still valid: use it.
      if (
        !(err instanceof CredentialError && err.signedOut) &&
        this.credential &&
        Date.parse(this.credential.expires_at) - this.opts.now() > 5_000
      ) {
        return this.credential;
      }
      throw err;
    }
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    const c = this.credential;
    if (!c || this.closed) return;
    const inMs = Math.max(5_000, (c.refresh_in_seconds || 60) * 1000);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.freshCredential().catch((err) => {
        if (err instanceof CredentialError && err.signedOut) void this.signedOut(err.message);
        else this.refreshTimer = setTimeout(() => this.scheduleRefresh(), 10_000);
      });
    }, inMs);
  }

  private async signedOut(message: string): Promise<void> {
    this.closed = true;
    this.clearTimers();
    const t = this.transport;
    this.transport = null;
    if (t) await t.end().catch(() => {});
    for (const [seqId, p] of this.pending) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(new ConnectionClosed(p.action, seqId));
    }
    this.pending.clear();
    this.setState("unauthorized", { error: message });
  }

  private async open(): Promise<void> {
    const reconnect = this.everConnected;
    this.setState(reconnect ? "reconnecting" : "connecting");
    let transport: Transport;
    try {
      if (!reconnect) perfMark("credential-start");
      const c = await this.freshCredential();
      if (!reconnect) perfMark("credential-end");
      if (this.closed) return;
      const device = c.client_id.slice(c.employee.employee_id.length + 1);
      transport = await this.opts.transport({
        url: c.ws_url,
        clientId: c.client_id,
        username: c.username,
        password: c.password,
        protocolVersion: c.protocol_version === 4 ? 4 : 5,
        keepaliveSeconds: 30,
        connectTimeoutMs: 10_000,
        will: this.opts.presence
          ? {
              topic: STATUS_PREFIX + c.employee.employee_id,
              payload: JSON.stringify({
                status: "offline",
                updated_at: new Date(this.opts.now()).toISOString(),
                device,
                client_id: c.client_id,
              }),
              qos: 1,
              retain: true,
            }
          : undefined,
      });
    } catch (err) {
      if (err instanceof CredentialError && err.signedOut) {
        await this.signedOut(err.message);
        if (!reconnect) throw err;
        return;
      }
      if (!reconnect) {
        this.setState("closed", { error: (err as Error).message });
        this.closed = true;
        throw err;
      }
      this.scheduleReconnect((err as Error).message, err instanceof ConnectRefused && err.unauthorized);
      return;
    }
    if (this.closed) {
      await transport.end().catch(() => {});
      return;
    }
    if (!reconnect) perfMark("connack");
    this.transport = transport;
    transport.onMessage((topic, payload) => this.onMessage(topic, payload));
    transport.onClose((reason) => {
      if (this.transport !== transport) return;
      this.transport = null;
      this.scheduleReconnect(reason, false);
    });
    try {
      await transport.subscribe([
        `${RESPONSE_PREFIX}${this.clientId}/+`,
        INBOX_PREFIX + this.employeeId,
        STATUS_PREFIX + "+",
        PROFILE_PREFIX + "+",
        SYSTEM_TOPIC,
        ...[...this.groups.keys()].map((g) => GROUP_PREFIX + g),
      ]);
      if (this.opts.presence) {
        // Not awaited: the first requests need not wait for this PUBACK.
        void transport.publish(this.statusTopic, this.statusPayload("online"), { qos: 1, retain: true }).catch(() => {});
      }
    } catch (err) {
      if (this.transport === transport) {
        this.transport = null;
        await transport.end().catch(() => {});
        this.scheduleReconnect((err as Error).message, false);
      }
      if (!reconnect) throw err;
      return;
    }
    if (!reconnect) perfMark("subscribed");
    this.attempt = 0;
    this.everConnected = true;
    this.setState("connected");
    // Requests that waited through the drop: the same seq_id again (executed once).
    for (const p of this.pending.values()) this.publishPending(p);
    // First connect: the groups are followed in the background (nothing to resubscribe yet).
    // After a reconnect: group topics first, then what was missed meanwhile.
    if (!reconnect) {
      if (this.opts.trackGroups) void this.syncGroups().catch((err) => console.warn("mchat: group.list failed", err));
      return;
    }
    try {
      if (this.opts.trackGroups) await this.syncGroups();
      await this.catchUp();
    } catch (err) {
      if (!(err instanceof MChatError)) throw err;
      console.warn("mchat: catching up after connect failed", err);
    }
  }

  private scheduleReconnect(reason: string, refused: boolean): void {
    if (this.closed || this.reconnectTimer) return;
    const base = Math.min(this.opts.backoffMaxMs, this.opts.backoffInitialMs * 2 ** this.attempt);
    const delay = Math.round(base * (0.5 + this.opts.random() / 2));
    this.attempt += 1;
    this.setState("reconnecting", { error: refused ? "凭据被拒绝" : reason, retryInMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closed) void this.connect().catch(() => {});
    }, delay);
  }

  /** Reconnect at once (e.g. the page became visible or the network came back). */
  reconnectNow(): void {
    if (this.closed || this.state === "connected") return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    void this.connect().catch(() => {});
  }

  // --- requests --------------------------------------------------------------------------------

  /** One request; resolves with the whole response (any code). Rejects with RequestTimeout. */
  call<T = Record<string, unknown>>(
    action: string,
    fields: Record<string, unknown> = {},
    options: RequestOptions = {},
  ): Promise<Response<T>> {
    const seqId = options.seqId ?? newSeqId();
    if (!SEQ_ID_RE.test(seqId)) {
      return Promise.reject(new Error("seq_id: 1-128 printable ASCII characters without '/', '+', '#'"));
    }
    if (this.closed && this.state !== "idle") return Promise.reject(new ConnectionClosed(action, seqId));
    const existing = this.pending.get(seqId);
    if (existing) return Promise.reject(new Error(`seq_id ${seqId} is already waiting for its answer`));
    return new Promise<Response<T>>((resolve, reject) => {
      const p: Pending = {
        action,
        topic: `${REQUEST_PREFIX}${this.clientId}/${seqId}`,
        body: JSON.stringify({ ...fields, action }),
        timeoutMs: options.timeoutMs ?? this.opts.requestTimeoutMs,
        retriesLeft: options.retries ?? 0,
        timer: null,
        resolve: resolve as (r: Response) => void,
        reject,
      };
      this.pending.set(seqId, p);
      this.publishPending(p);
      const arm = () => {
        p.timer = setTimeout(() => {
          if (this.pending.get(seqId) !== p) return;
          if (p.retriesLeft > 0) {
            p.retriesLeft -= 1;
            this.publishPending(p);
            arm();
            return;
          }
          this.pending.delete(seqId);
          reject(new RequestTimeout(action, seqId, p.timeoutMs));
        }, p.timeoutMs);
      };
      arm();
    });
  }

  private publishPending(p: Pending): void {
    const t = this.transport;
    if (!t || this.state !== "connected") return; // sent again once connected
    // The client id may have changed with a new credential: the topic follows it.
    const seqId = p.topic.slice(p.topic.lastIndexOf("/") + 1);
    p.topic = `${REQUEST_PREFIX}${this.clientId}/${seqId}`;
    t.publish(p.topic, p.body, { qos: 1 }).catch(() => {
      /* the drop is handled by onClose; the request is sent again after reconnecting */
    });
  }

  /** A request's `data`, or the typed error of its code (errors.ts). 429 and timeouts are
   * retried `retries` times with the same seq_id. */
  async request<T = Record<string, unknown>>(
    action: string,
    fields: Record<string, unknown> = {},
    options: RequestOptions = {},
  ): Promise<T> {
    const seqId = options.seqId ?? newSeqId();
    let retries = options.retries ?? this.opts.retries;
    for (;;) {
      const response = await this.call<T>(action, fields, { ...options, seqId, retries });
      if (response.code === 0) return (response.data ?? {}) as T;
      const error = errorFor(response, action, seqId);
      if (error instanceof RateLimited && retries > 0) {
        retries -= 1;
        await sleep(Math.max(50, error.retryAfterMs));
        continue;
      }
      throw error;
    }
  }

  // --- deliveries ------------------------------------------------------------------------------

  private onMessage(topic: string, payload: string): void {
    const respPrefix = `${RESPONSE_PREFIX}${this.clientId}/`;
    if (topic.startsWith(respPrefix)) {
      const seqId = topic.slice(respPrefix.length);
      const p = this.pending.get(seqId);
      if (!p) return; // a repeated answer
      let response: Response;
      try {
        response = JSON.parse(payload) as Response;
      } catch {
        return;
      }
      if (typeof response !== "object" || response === null || typeof response.code !== "number") return;
      this.pending.delete(seqId);
      if (p.timer) clearTimeout(p.timer);
      p.resolve(response);
      return;
    }
    const delivery = classify(topic, payload, this.employeeId);
    if (!delivery) return;
    switch (delivery.kind) {
      case "message": {
        const m = delivery.message;
        const s = this.sequencer(delivery.conversation);
        if (m.stream && !m.streaming) {
          // A stream's final form: its seq was handed out when the stream started.
          this.streams.normalize(delivery.conversation, m);
          if (s.last !== undefined && m.seq <= s.last) {
            this.emit({ ...delivery, update: true });
            return;
          }
        }
        s.push(m);
        return;
      }
      case "stream_start": {
        // The stream takes its seq now: in order with the other messages, as an open message.
        const d = delivery.data;
        this.sequencer(delivery.conversation).push({
          msg_id: d.msg_id,
          type: d.conversation_type,
          from_employee_id: d.from_employee_id,
          to_employee_id: d.to_employee_id,
          group_id: d.group_id,
          content: "",
          sent_at: d.sent_at,
          seq: d.seq,
          stream: true,
          streaming: true,
          ...(d.reply_to ? { reply_to: d.reply_to } : {}),
        });
        return;
      }
      case "stream_delta":
        this.streams.delta(delivery.conversation, delivery.data);
        return;
      case "stream_cancel":
        this.streams.finish(delivery.data.msg_id, { content: delivery.data.content, streaming: false, canceled: true });
        break;
      case "notification":
        this.followMembership(delivery.data);
        break;
    }
    this.emit(delivery);
  }

  private sequencer(c: ConversationRef): Sequencer {
    const key = conversationKey(c);
    let s = this.sequencers.get(key);
    if (!s) {
      const topic = this.topicOf(c);
      s = new Sequencer(
        {
          emit: (messages, recovered) => {
            for (const m of messages) {
              this.emit({ kind: "message", topic, conversation: c, message: this.streams.normalize(c, m), recovered });
            }
          },
          fetch: (after, before) => this.fetchRange(c, after, before),
          setTimer: (fn, ms) => setTimeout(fn, ms),
          clearTimer: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
        },
        this.opts.gapWaitMs,
      );
      this.sequencers.set(key, s);
    }
    return s;
  }

  /** Tell the client that the caller already holds a conversation up to `seq` (loaded with
   * msg.history): deliveries up to it are not handed out again, later gaps are filled from it. */
  noteSeq(c: ConversationRef, seq: number): void {
    this.sequencer(c).note(seq);
  }

  /** The highest seq handed out for a conversation. */
  lastSeq(c: ConversationRef): number | undefined {
    return this.sequencers.get(conversationKey(c))?.last;
  }

  private async fetchRange(c: ConversationRef, after: number, before: number | undefined): Promise<MessagePayload[]> {
    const found: MessagePayload[] = [];
    let from = after;
    for (let page = 0; page < 20; page++) {
      const h = await this.history(c, { afterSeq: from, beforeSeq: before, limit: 100 });
      found.push(...h.messages);
      for (const m of h.messages) from = Math.max(from, m.seq);
      if (!h.has_more || h.messages.length === 0) break;
    }
    return found;
  }

  /** After a reconnect: what changed while away. Conversations this client followed get their
   * missing messages (after_seq); everyone gets a `resync` event with the list. */
  async catchUp(): Promise<void> {
    const list = await this.conversationList({ limit: 100 });
    for (const c of list.conversations) {
      const ref: ConversationRef =
        c.conversation_type === "group"
          ? { type: "group", id: c.group_id ?? "" }
          : { type: "private", id: c.peer_employee_id ?? "" };
      const s = this.sequencers.get(conversationKey(ref));
      if (s && s.last !== undefined && c.last_seq > s.last) {
        await s.catchUp(c.last_seq).catch(() => {});
      }
    }
    await this.streams.refresh();
    this.emit({ kind: "resync", conversations: list.conversations });
  }

  // --- groups followed -------------------------------------------------------------------------

  async syncGroups(): Promise<GroupSummary[]> {
    const { groups } = await this.groupList();
    const fresh = new Set(groups.map((g) => g.group_id));
    const gone = [...this.groups.keys()].filter((g) => !fresh.has(g));
    const added = groups.filter((g) => !this.groups.has(g.group_id)).map((g) => g.group_id);
    for (const g of gone) this.groups.delete(g);
    for (const g of groups) this.groups.set(g.group_id, { group_id: g.group_id, name: g.name });
    const t = this.transport;
    if (t) {
      await t.unsubscribe(gone.map((g) => GROUP_PREFIX + g)).catch(() => {});
      await t.subscribe(added.map((g) => GROUP_PREFIX + g)).catch(() => {});
    }
    return groups;
  }

  private followMembership(n: { type: string; body: { group_id?: string; group_name?: string; member_ids?: string[] } }): void {
    if (!this.opts.trackGroups) return;
    const gid = n.body?.group_id;
    if (!gid) return;
    const me = (n.body.member_ids ?? []).includes(this.employeeId);
    const t = this.transport;
    if (n.type === "member_joined" && me && !this.groups.has(gid)) {
      this.groups.set(gid, { group_id: gid, name: n.body.group_name ?? "" });
      void t?.subscribe([GROUP_PREFIX + gid]).catch(() => {});
    } else if ((n.type === "member_removed" && me) || n.type === "group_dismissed") {
      this.groups.delete(gid);
      void t?.unsubscribe([GROUP_PREFIX + gid]).catch(() => {});
    } else if (n.type === "group_renamed" && this.groups.has(gid)) {
      this.groups.set(gid, { group_id: gid, name: n.body.group_name ?? "" });
    }
  }

  // --- typed actions (docs/protocol.md §3) -----------------------------------------------------

  bind(): Promise<Record<string, never>> {
    return this.request("auth.bind", { employee_id: this.employeeId });
  }

  challenge(): Promise<{ challenge_id: string; token: string; expires_at: string }> {
    return this.request("auth.challenge");
  }

  orgTree(version?: string): Promise<OrgTree> {
    return this.request("org.tree", version ? { version } : {});
  }

  conversationList(options: { limit?: number; cursor?: string } = {}): Promise<{
    conversations: ConversationSummary[];
    next_cursor: string | null;
  }> {
    return this.request("conversation.list", { ...options });
  }

  history(
    c: ConversationRef,
    options: { beforeSeq?: number; afterSeq?: number; limit?: number } = {},
  ): Promise<HistoryPage> {
    const fields: Record<string, unknown> = { ...conversationFields(c) };
    if (options.beforeSeq !== undefined) fields.before_seq = options.beforeSeq;
    if (options.afterSeq !== undefined) fields.after_seq = options.afterSeq;
    if (options.limit !== undefined) fields.limit = options.limit;
    return this.request<HistoryPage>("msg.history", fields).then((page) => ({
      ...page,
      messages: page.messages.map((m) => this.streams.normalize(c, m)),
    }));
  }

  /** The text so far of an open stream this client follows (undefined when none). */
  streamText(msgId: string): string | undefined {
    return this.streams.textOf(msgId);
  }

  /** Send a message; pass `seqId` to retry a failed send (it is never stored twice). */
  send(
    c: ConversationRef,
    content: Content,
    options: RequestOptions = {},
  ): Promise<{ msg_id: string; seq: number; sent_at: string }> {
    return c.type === "group"
      ? this.request("msg.send_group", { group_id: c.id, content }, options)
      : this.request("msg.send_private", { to_employee_id: c.id, content }, options);
  }

  sendPrivate(to: string, content: Content, options: RequestOptions = {}) {
    return this.send({ type: "private", id: to }, content, options);
  }

  sendGroup(groupId: string, content: Content, options: RequestOptions = {}) {
    return this.send({ type: "group", id: groupId }, content, options);
  }

  readAck(c: ConversationRef, msgId: string): Promise<{ msg_id: string; last_read_seq: number; read_at: string }> {
    return this.request("msg.read_ack", { msg_id: msgId, ...conversationFields(c) });
  }

  recall(msgId: string): Promise<{ msg_id: string; seq: number; recalled_at: string }> {
    return this.request("msg.recall", { msg_id: msgId });
  }

  groupList(): Promise<{ groups: GroupSummary[] }> {
    return this.request("group.list");
  }

  groupInfo(groupId: string): Promise<GroupInfo> {
    return this.request("group.info", { group_id: groupId });
  }

  groupCreate(
    name: string,
    memberIds: string[],
    description?: string,
  ): Promise<{ group_id: string; name: string; member_ids: string[]; owner_id: string }> {
    const fields: Record<string, unknown> = { name, member_ids: memberIds };
    if (description) fields.opts = { description };
    return this.request("group.create", fields);
  }

  groupUpdate(
    groupId: string,
    updates: { name?: string; description?: string; owner_id?: string; admin_ids?: string[] },
  ): Promise<{ group_id: string; updated_fields: string[] }> {
    return this.request("group.update", { group_id: groupId, updates });
  }

  groupMemberAdd(groupId: string, memberIds: string[]): Promise<{ added_ids: string[]; current_member_count: number }> {
    return this.request("group.member_add", { group_id: groupId, member_ids: memberIds });
  }

  groupMemberRemove(
    groupId: string,
    memberIds: string[],
  ): Promise<{ removed_ids: string[]; current_member_count: number }> {
    return this.request("group.member_remove", { group_id: groupId, member_ids: memberIds });
  }

  groupLeave(groupId: string) {
    return this.groupMemberRemove(groupId, [this.employeeId]);
  }

  /** Dismiss a group with a challenge obtained by `challenge()` (the confirmation step). */
  groupDismiss(
    groupId: string,
    challenge: { challenge_id: string; token: string },
  ): Promise<{ group_id: string; dismissed_at: string }> {
    return this.request("group.dismiss", {
      group_id: groupId,
      challenge_id: challenge.challenge_id,
      token: challenge.token,
    });
  }

  fileUploadUrl(fileName: string, contentType: string, size: number): Promise<UploadGrant> {
    return this.request("file.upload_url", { file_name: fileName, content_type: contentType, size });
  }

  fileDownloadUrl(key: string): Promise<DownloadGrant> {
    return this.request("file.download_url", { key });
  }

  /** Upload bytes: file.upload_url, then PUT them to the URL it returned. */
  async upload(
    body: Blob | Uint8Array,
    fileName: string,
    contentType: string,
    fetchImpl: typeof fetch = (i, init) => fetch(i, init),
  ): Promise<UploadGrant> {
    const size = body instanceof Uint8Array ? body.byteLength : body.size;
    const grant = await this.fileUploadUrl(fileName, contentType, size);
    if (!/^https?:\/\//i.test(grant.url) && !grant.url.startsWith("/")) {
      throw new Error("上传地址不是 http(s) URL");
    }
    const res = await fetchImpl(grant.url, {
      method: grant.method || "PUT",
      headers: grant.headers,
      body: body as BodyInit,
    });
    if (!res.ok) throw new Error(`上传失败：HTTP ${res.status}`);
    return grant;
  }

  configStorage(): Promise<Record<string, unknown>> {
    return this.request("config.storage");
  }

  // --- streams, tasks, typing, agent cards (§13) ---------------------------------------------

  /** Start a streamed message (`replyTo`: a msg_id of the same conversation). */
  streamStart(c: ConversationRef, options: { replyTo?: string; seqId?: string } = {}): Promise<{ msg_id: string; seq: number; sent_at: string }> {
    const fields: Record<string, unknown> = c.type === "group" ? { group_id: c.id } : { to_employee_id: c.id };
    if (options.replyTo) fields.reply_to = options.replyTo;
    return this.request("msg.stream_start", fields, { seqId: options.seqId });
  }

  streamAppend(msgId: string, delta: string, options: RequestOptions = {}): Promise<{ msg_id: string; seq: number; offset: number; length: number }> {
    return this.request("msg.stream_append", { msg_id: msgId, delta }, options);
  }

  /** End a stream; `content` (optional) replaces the streamed text. */
  streamEnd(msgId: string, content?: string): Promise<{ msg_id: string; seq: number; length: number; ended_at: string }> {
    return this.request("msg.stream_end", content === undefined ? { msg_id: msgId } : { msg_id: msgId, content });
  }

  /** Stop a stream addressed to me (or, in a group I own or administer, anyone's). */
  streamCancel(msgId: string): Promise<{ msg_id: string; seq: number; length: number; canceled_at: string }> {
    return this.request("msg.stream_cancel", { msg_id: msgId });
  }

  /** Move a task: the agent sets working / input-required / completed / failed, the sender canceled. */
  taskUpdate(
    msgId: string,
    state: Exclude<TaskState, "submitted">,
    statusText?: string,
  ): Promise<{ task_id: string; msg_id: string; state: TaskState; status_text: string | null; updated_at: string }> {
    return this.request("agent.task_update", statusText ? { msg_id: msgId, state, status_text: statusText } : { msg_id: msgId, state });
  }

  /** "Typing" (a person, ~6 s) or an agent's status (`ttlSeconds`); `active: false` clears it. */
  typing(
    c: ConversationRef,
    options: { statusText?: string; ttlSeconds?: number; active?: boolean } = {},
  ): Promise<{ expires_at: string; delivered: boolean }> {
    const fields: Record<string, unknown> = c.type === "group" ? { group_id: c.id } : { peer_employee_id: c.id };
    if (options.statusText) fields.status_text = options.statusText;
    if (options.ttlSeconds !== undefined) fields.ttl_seconds = options.ttlSeconds;
    if (options.active === false) fields.active = false;
    return this.request("conversation.typing", fields, { retries: 0 });
  }

  agentCard(employeeId: string): Promise<AgentCard> {
    return this.request("agent.card", { employee_id: employeeId });
  }

  agentCapabilityList(skill?: string): Promise<{ agent_ids: string[]; agent_profiles: AgentProfile[] }> {
    return this.request("agent.capability_list", skill ? { skill } : {});
  }
}

/** The conversation a message belongs to, as seen by `me`. */
export { messageConversation };

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
