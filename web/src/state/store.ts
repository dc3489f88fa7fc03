// The page's state: conversations, threads, people, groups, agents and the connection, kept in
// one store and fed by one delivery dispatcher (dispatch.ts), in the spirit of Zulip's
// server_events_dispatch. Components read it with useStore() and call the actions (actions.ts).
import type {
  AgentCard,
  AgentProfile,
  ConnectionState,
  Content,
  ConversationRef,
  Department,
  Employee,
  GroupInfo,
  MessagePayload,
  PresencePayload,
  TaskState,
} from "../client";

export type SendStatus = "sent" | "pending" | "failed" | "agent_timeout";

export interface MessageItem {
  kind: "message";
  /** msg_id once known, else the send's seq_id. */
  id: string;
  msgId: string | null;
  seq: number | null;
  from: string;
  content: Content | null;
  sentAt: string;
  recalled: boolean;
  status: SendStatus;
  /** The seq_id of my send (reused by a retry). */
  seqId?: string;
  error?: string;
  readCount?: number;
  memberCount?: number;
  /** A streamed message (§13): `streaming` while its text still grows; `canceled` once stopped. */
  stream?: boolean;
  streaming?: boolean;
  canceled?: boolean;
}

/** A task's current state (a private message to an agent, by its msg_id). */
export interface TaskInfo {
  state: TaskState;
  statusText: string;
  updatedAt: string;
}

/** Someone typing, or an agent's status, in a conversation until `expiresAt` (local ms). */
export interface TypingInfo {
  employeeId: string;
  statusText: string;
  isAgent: boolean;
  expiresAt: number;
}

export interface NoticeItem {
  kind: "notice";
  id: string;
  /** Shown after the message with this seq. */
  afterSeq: number;
  text: string;
  at: string;
}

export type ThreadItem = MessageItem | NoticeItem;

export interface Thread {
  messages: MessageItem[]; // sent ones sorted by seq, then pending ones
  notices: NoticeItem[];
  loaded: boolean;
  loading: boolean;
  hasMoreBefore: boolean;
  loadingOlder: boolean;
  error?: string;
}

export interface Conversation {
  key: string;
  ref: ConversationRef;
  name: string;
  dismissed: boolean; // closed to me: the group was dismissed, or I left or was removed
  groupDismissed?: boolean; // closed because the group itself was dismissed
  lastSeq: number;
  lastReadSeq: number;
  unread: number;
  lastMessage: MessagePayload | null;
  lastActivityAt: string;
  /** Private: the highest seq the peer has read (from read receipts). */
  peerReadSeq: number;
}

/** An agent's card as the page holds it: loading, loaded, or the error that came instead. */
export type AgentCardEntry = { loading: true } | { loading: false; card: AgentCard } | { loading: false; error: string };

export interface SystemNotice {
  id: string;
  title: string;
  text: string;
  at: string;
}

export interface AppState {
  me: Employee | null;
  connection: ConnectionState;
  connectionError: string;
  everConnected: boolean;
  conversations: Map<string, Conversation>;
  /** The first page of conversation.list is in. */
  conversationsLoaded: boolean;
  /** Every page of conversation.list is in. */
  conversationsComplete: boolean;
  threads: Map<string, Thread>;
  employees: Map<string, Employee>;
  departments: Department[];
  orgVersion: string | null;
  presence: Map<string, PresencePayload>;
  groups: Map<string, GroupInfo>;
  agents: AgentProfile[] | null;
  agentsError: string;
  /** Agent Cards (§13.8) by employee id, fetched when a person opens an agent's skills. */
  agentCards: Map<string, AgentCardEntry>;
  systemNotices: SystemNotice[];
  /** Task states by msg_id (from task_status deliveries and from history). */
  tasks: Map<string, TaskInfo>;
  /** Conversation key -> employee id -> who is typing there. */
  typing: Map<string, Map<string, TypingInfo>>;
  activeKey: string | null;
  visible: boolean;
  toast: string;
}

export function initialState(): AppState {
  return {
    me: null,
    connection: "idle",
    connectionError: "",
    everConnected: false,
    conversations: new Map(),
    conversationsLoaded: false,
    conversationsComplete: false,
    threads: new Map(),
    employees: new Map(),
    departments: [],
    orgVersion: null,
    presence: new Map(),
    groups: new Map(),
    agents: null,
    agentsError: "",
    agentCards: new Map(),
    systemNotices: [],
    tasks: new Map(),
    typing: new Map(),
    activeKey: null,
    visible: true,
    toast: "",
  };
}

/** One frame at 60 Hz: changes closer than this to the last render wait for the next frame. */
const FRAME_MS = 16;

export class Store {
  state: AppState = initialState();
  version = 0;
  private listeners = new Set<() => void>();
  private scheduled = false;
  /** When the listeners last ran (ms since the epoch). */
  private lastRun = 0;

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Mark the state changed; listeners run once however many changes come together. */
  changed(): void {
    this.version += 1;
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      this.lastRun = Date.now();
      for (const fn of [...this.listeners]) fn();
    };
    // A change after a quiet spell (a message delivered on its own) is shown at once, in this
    // task's microtasks: waiting for the next frame cost up to 16 ms of Enter -> shown
    // (bench/web/REPORT.md). Changes within a frame of the last render (a burst of deliveries)
    // wait for the next frame in a visible page and render once. Hidden pages and Node.js: at
    // once (the tab title still shows unread counts while hidden).
    const g = globalThis as { requestAnimationFrame?: (cb: () => void) => number; document?: { visibilityState?: string } };
    const burst = Date.now() - this.lastRun < FRAME_MS;
    if (burst && g.requestAnimationFrame && g.document?.visibilityState === "visible") g.requestAnimationFrame(run);
    else queueMicrotask(run);
  }

  thread(key: string): Thread {
    let t = this.state.threads.get(key);
    if (!t) {
      t = { messages: [], notices: [], loaded: false, loading: false, hasMoreBefore: false, loadingOlder: false };
      this.state.threads.set(key, t);
    }
    return t;
  }

  /** Who is typing in a conversation now (not me; expired ones left out). */
  typingIn(key: string, now = Date.now()): TypingInfo[] {
    return [...(this.state.typing.get(key)?.values() ?? [])].filter((x) => x.expiresAt > now);
  }

  /** Drop expired indicators; the soonest expiry left (ms since the epoch) or null. */
  pruneTyping(now = Date.now()): number | null {
    let next: number | null = null;
    let dropped = false;
    for (const [key, who] of this.state.typing) {
      for (const [id, x] of who) {
        if (x.expiresAt <= now) {
          who.delete(id);
          dropped = true;
        } else if (next === null || x.expiresAt < next) next = x.expiresAt;
      }
      if (who.size === 0) this.state.typing.delete(key);
    }
    if (dropped) this.changed();
    return next;
  }

  /** Conversations newest first. */
  sortedConversations(): Conversation[] {
    return [...this.state.conversations.values()].sort((a, b) =>
      a.lastActivityAt < b.lastActivityAt ? 1 : a.lastActivityAt > b.lastActivityAt ? -1 : 0,
    );
  }

  totalUnread(): number {
    let n = 0;
    for (const c of this.state.conversations.values()) n += c.unread;
    return n;
  }

  nameOf(employeeId: string): string {
    return this.state.employees.get(employeeId)?.name ?? employeeId;
  }
}

export function messageItem(m: MessagePayload): MessageItem {
  return {
    kind: "message",
    id: m.msg_id,
    msgId: m.msg_id,
    seq: m.seq,
    from: m.from_employee_id,
    content: m.recalled ? null : m.content,
    sentAt: m.sent_at,
    recalled: Boolean(m.recalled),
    status: "sent",
    ...(m.stream ? { stream: true, streaming: Boolean(m.streaming), canceled: Boolean(m.canceled) } : {}),
  };
}

/** Put a sent message into a thread by seq; replaces an entry with the same msg_id. */
export function placeMessage(thread: Thread, item: MessageItem): void {
  const msgs = thread.messages;
  const same = item.msgId ? msgs.findIndex((m) => m.msgId === item.msgId) : -1;
  if (same >= 0) {
    const old = msgs[same];
    // A stream that finished never goes back to its open form (a history page answered earlier).
    if (old.stream && !old.streaming && item.streaming) return;
    msgs[same] = {
      ...old,
      ...item,
      recalled: old.recalled || item.recalled,
      content: old.recalled || item.recalled ? null : item.content,
      readCount: old.readCount ?? item.readCount,
      memberCount: old.memberCount ?? item.memberCount,
      status: old.status === "agent_timeout" ? old.status : item.status,
      seqId: old.seqId ?? item.seqId,
      id: old.id,
    };
    return;
  }
  if (item.seq === null) {
    msgs.push(item);
    return;
  }
  let i = msgs.length;
  while (i > 0) {
    const prev = msgs[i - 1];
    if (prev.seq !== null && prev.seq < item.seq) break;
    i -= 1;
  }
  msgs.splice(i, 0, item);
}

export function conversationName(store: Store, ref: ConversationRef, fallback?: string): string {
  if (ref.type === "private") return store.state.employees.get(ref.id)?.name ?? fallback ?? ref.id;
  return store.state.groups.get(ref.id)?.name ?? fallback ?? ref.id;
}
