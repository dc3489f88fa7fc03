// The MChat wire contract (docs/protocol.md) as TypeScript types. Every payload may carry extra
// keys (the server adds fields as extras), so these types describe what the client relies on.

export type ConversationType = "private" | "group";

/** A conversation: a private pair named by the peer, or a group. */
export interface ConversationRef {
  type: ConversationType;
  /** The peer's employee id (private) or the group id. */
  id: string;
}

export function conversationKey(c: ConversationRef): string {
  return `${c.type}:${c.id}`;
}

export function parseConversationKey(key: string): ConversationRef | null {
  const i = key.indexOf(":");
  if (i < 0) return null;
  const type = key.slice(0, i);
  const id = key.slice(i + 1);
  if ((type !== "private" && type !== "group") || !id) return null;
  return { type, id };
}

/** The request fields that name a conversation (msg.history, msg.read_ack). */
export function conversationFields(c: ConversationRef): Record<string, string> {
  return c.type === "group"
    ? { conversation_type: "group", group_id: c.id }
    : { conversation_type: "private", peer_employee_id: c.id };
}

export interface TextContent {
  type: "text";
  text: string;
}
export interface ImageContent {
  type: "image";
  url?: string;
  key?: string;
  width?: number;
  height?: number;
  name?: string;
  size?: number;
}
export interface FileContent {
  type: "file";
  url?: string;
  key?: string;
  name: string;
  size?: number;
}
/** Message content (spec 1.3): a string, or a typed object; null once recalled. */
export type Content = string | TextContent | ImageContent | FileContent;

export interface MessagePayload {
  msg_id: string;
  type?: "private" | "group";
  from_employee_id: string;
  to_employee_id?: string;
  group_id?: string;
  content: Content | null;
  sent_at: string;
  seq: number;
  recalled?: boolean;
  recalled_at?: string;
  /** A streamed message (docs/protocol.md §13.5); `streaming` while open (content = the text so far). */
  stream?: boolean;
  streaming?: boolean;
  canceled?: boolean;
  reply_to?: string;
  /** A task (a private message to an agent, §13.6): its current state. */
  task_state?: TaskState;
  task_status_text?: string | null;
  task_updated_at?: string;
}

/** A task's states (A2A): `submitted` until the agent moves it; the last three are final. */
export type TaskState = "submitted" | "working" | "input-required" | "completed" | "failed" | "canceled";
export const FINAL_TASK_STATES: readonly TaskState[] = ["completed", "failed", "canceled"];

export interface Response<T = Record<string, unknown>> {
  seq_id: string;
  code: number;
  message: string;
  data: T | null;
}

export interface Employee {
  employee_id: string;
  name: string;
  department_id?: string | null;
  manager_id?: string | null;
  is_ai_agent?: boolean;
  is_org_admin?: boolean;
}

/** What POST /api/web/mqtt-credential answers (WEB-CONTRACT.md). */
export interface Credential {
  employee: Employee;
  client_id: string;
  username: string;
  password: string;
  expires_at: string;
  refresh_in_seconds: number;
  ws_url: string;
  protocol_version?: number;
}

export interface ConversationSummary {
  conversation_type: ConversationType;
  peer_employee_id?: string;
  group_id?: string;
  name: string;
  dismissed?: boolean;
  last_seq: number;
  last_read_seq: number;
  unread_count: number;
  last_message: MessagePayload | null;
  last_activity_at: string | null;
}

export interface HistoryPage {
  conversation_type: ConversationType;
  group_id?: string;
  peer_employee_id?: string;
  messages: MessagePayload[];
  has_more: boolean;
  last_seq: number;
  last_read_seq: number;
}

export interface GroupSummary {
  group_id: string;
  name: string;
  description?: string;
  owner_id: string;
  created_at?: string;
  role: "owner" | "admin" | "member";
  member_count: number;
}

export interface GroupMember {
  employee_id: string;
  name: string;
  role: "owner" | "admin" | "member";
  is_ai_agent: boolean;
  joined_at?: string;
}

export interface GroupInfo extends GroupSummary {
  members: GroupMember[];
}

export interface Department {
  department_id: string;
  name: string;
  parent_id: string | null;
  sort_order?: number;
}

export interface OrgTree {
  version: string;
  unchanged?: boolean;
  departments?: Department[];
  employees?: Employee[];
}

export interface AgentProfile {
  employee_id: string;
  name: string;
  capabilities: string[];
  skills_badge: string[];
  description?: string;
  owner_id?: string;
  department_id?: string;
  online?: boolean;
  match?: string;
}

/** §13.8: an agent's A2A-style Agent Card (agent.card). */
export interface AgentCard {
  name: string;
  description: string;
  url: string;
  version: string;
  capabilities: { streaming: boolean; pushNotifications?: boolean; stateTransitionHistory?: boolean };
  skills: { id: string; name: string; description?: string; tags?: string[]; examples?: string[] }[];
  mchat: Record<string, unknown> & {
    employee_id: string;
    owner?: { employee_id: string; name: string } | null;
    ack_deadline_seconds?: number;
    task_states?: TaskState[];
    streaming?: boolean;
    online?: boolean;
  };
}

export interface UploadGrant {
  url: string;
  method: string;
  headers: Record<string, string>;
  key: string;
  file_name: string;
  content_type: string;
  size: number;
  expires_at: string;
}

export interface DownloadGrant {
  url: string;
  method: string;
  key: string;
  file_name: string;
  content_type: string;
  size: number;
  expires_at: string;
}

export interface ReceiptPrivate {
  type: "read_receipt";
  conversation_type: "private";
  reader_id: string;
  msg_id: string;
  seq: number;
  read_at: string;
}
export interface ReceiptGroup {
  type: "read_receipt";
  conversation_type: "group";
  group_id: string;
  msg_id: string;
  seq: number;
  read_count: number;
  member_count: number;
}
export interface ReadPosition {
  type: "read_position";
  conversation_type: ConversationType;
  peer_employee_id?: string;
  group_id?: string;
  last_read_seq: number;
  read_at: string;
}
export interface RecallEvent {
  type: "recall";
  msg_id: string;
  seq: number;
  recalled_by: string;
  recalled_at: string;
  conversation_type?: ConversationType;
  from_employee_id?: string;
  to_employee_id?: string;
  group_id?: string;
}
export interface Notification {
  notify_id: string;
  type: string;
  title: string;
  body: Record<string, unknown> & {
    group_id?: string;
    group_name?: string;
    member_ids?: string[];
    operator_id?: string | null;
    inviter_id?: string | null;
    old_name?: string;
    text?: string;
  };
  created_at: string;
}
export interface PresencePayload {
  status: "online" | "offline";
  updated_at: string;
  device?: string;
  client_id?: string;
  source?: string;
  online_devices?: number;
  last_seen?: string;
}
export interface ProfileEvent {
  employee_id: string;
  event: "created" | "updated" | "deactivated" | "reactivated";
  fields: string[];
  profile: Record<string, unknown> & { name?: string; department_id?: string; is_active?: boolean };
  updated_at: string;
}

/** Where a stream, task or typing delivery belongs (private: both ids; group: group_id). */
interface ConversationFields {
  conversation_type: ConversationType;
  from_employee_id: string;
  to_employee_id?: string;
  group_id?: string;
}

/** §13.1: a streamed message took its `seq`; its text follows in stream_delta deliveries. */
export interface StreamStart extends ConversationFields {
  type: "stream_start";
  msg_id: string;
  seq: number;
  sent_at: string;
  reply_to?: string;
}
/** §13.2: coalesced text appended since the previous delta, at `offset`; `length` after it. */
export interface StreamDelta extends ConversationFields {
  type: "stream_delta";
  msg_id: string;
  seq: number;
  offset: number;
  delta: string;
  length: number;
}
/** §13.4: the stream was stopped; `content` is the text it keeps. */
export interface StreamCancel extends ConversationFields {
  type: "stream_cancel";
  msg_id: string;
  seq: number;
  content: string;
  canceled_by: string | null;
  canceled_at: string;
}
/** §13.6: a task changed state (to the sender's and the agent's devices). */
export interface TaskStatus extends ConversationFields {
  type: "task_status";
  task_id: string;
  msg_id: string;
  seq: number;
  agent_id: string;
  state: TaskState;
  status_text?: string | null;
  updated_by: string;
  updated_at: string;
}
/** §13.7: someone is typing, or an agent's "thinking" status, until `expires_at`. */
export interface TypingEvent extends ConversationFields {
  type: "typing";
  is_ai_agent?: boolean;
  status_text?: string | null;
  active: boolean;
  expires_at: string;
}

/** One decoded delivery. `conversation` is set for message-related kinds. */
export type Delivery =
  | { kind: "message"; topic: string; conversation: ConversationRef; message: MessagePayload; recovered: boolean }
  | { kind: "recall"; topic: string; conversation: ConversationRef | null; data: RecallEvent }
  | { kind: "receipt"; topic: string; conversation: ConversationRef | null; data: ReceiptPrivate | ReceiptGroup }
  | { kind: "read_position"; topic: string; conversation: ConversationRef | null; data: ReadPosition }
  | { kind: "notification"; topic: string; data: Notification }
  | { kind: "profile"; topic: string; employeeId: string; data: ProfileEvent }
  | { kind: "status"; topic: string; employeeId: string; data: PresencePayload | null }
  | { kind: "system"; topic: string; data: Notification }
  | { kind: "stream_start"; topic: string; conversation: ConversationRef; data: StreamStart }
  | { kind: "stream_delta"; topic: string; conversation: ConversationRef; data: StreamDelta }
  | { kind: "stream_cancel"; topic: string; conversation: ConversationRef; data: StreamCancel }
  | { kind: "task_status"; topic: string; conversation: ConversationRef; data: TaskStatus }
  | { kind: "typing"; topic: string; conversation: ConversationRef; data: TypingEvent }
  | { kind: "other"; topic: string; data: unknown };

export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed" | "unauthorized";
