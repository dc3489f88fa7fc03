// Turning a delivery (topic + JSON payload) into a typed Delivery, like mchat_sdk.events.classify.
import type {
  ConversationRef,
  Delivery,
  MessagePayload,
  Notification,
  PresencePayload,
  ProfileEvent,
  ReadPosition,
  RecallEvent,
  ReceiptGroup,
  ReceiptPrivate,
  StreamCancel,
  StreamDelta,
  StreamStart,
  TaskStatus,
  TypingEvent,
} from "./types";

export const INBOX_PREFIX = "mchat/inbox/";
export const GROUP_PREFIX = "mchat/group/";
export const STATUS_PREFIX = "mchat/status/";
export const PROFILE_PREFIX = "mchat/profile/";
export const SYSTEM_TOPIC = "mchat/system/notify";
export const RESPONSE_PREFIX = "mchat/msg/resp/";
export const REQUEST_PREFIX = "mchat/msg/req/";

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The conversation of a message payload, seen by employee `me`. */
export function messageConversation(m: MessagePayload, me: string): ConversationRef {
  if (m.group_id) return { type: "group", id: m.group_id };
  const peer = m.from_employee_id === me && m.to_employee_id ? m.to_employee_id : m.from_employee_id;
  return { type: "private", id: peer };
}

export function isMessagePayload(v: unknown): v is MessagePayload {
  return (
    isObj(v) &&
    typeof v.msg_id === "string" &&
    typeof v.from_employee_id === "string" &&
    typeof v.seq === "number" &&
    Number.isInteger(v.seq)
  );
}

function eventConversation(d: Obj, me: string): ConversationRef | null {
  if (typeof d.group_id === "string" && d.group_id) return { type: "group", id: d.group_id };
  if (typeof d.peer_employee_id === "string") return { type: "private", id: d.peer_employee_id };
  if (typeof d.reader_id === "string") return { type: "private", id: d.reader_id };
  if (typeof d.from_employee_id === "string" && typeof d.to_employee_id === "string") {
    return { type: "private", id: d.from_employee_id === me ? d.to_employee_id : d.from_employee_id };
  }
  return null;
}

/** Decode one delivery; `raw` is the payload text (an empty retained status is `null`). */
export function classify(topic: string, raw: string, me: string): Delivery | null {
  if (topic.startsWith(STATUS_PREFIX)) {
    const employeeId = topic.slice(STATUS_PREFIX.length);
    if (!raw) return { kind: "status", topic, employeeId, data: null };
    const p = parse(raw);
    return isObj(p) ? { kind: "status", topic, employeeId, data: p as unknown as PresencePayload } : null;
  }
  if (!raw) return null;
  const payload = parse(raw);
  if (!isObj(payload)) return payload === undefined ? null : { kind: "other", topic, data: payload };
  if (topic.startsWith(PROFILE_PREFIX)) {
    return {
      kind: "profile",
      topic,
      employeeId: topic.slice(PROFILE_PREFIX.length),
      data: payload as unknown as ProfileEvent,
    };
  }
  if (topic === SYSTEM_TOPIC) return { kind: "system", topic, data: payload as unknown as Notification };
  if (topic.startsWith(INBOX_PREFIX) || topic.startsWith(GROUP_PREFIX)) {
    if ("notify_id" in payload) return { kind: "notification", topic, data: payload as unknown as Notification };
    switch (payload.type) {
      case "recall":
        return { kind: "recall", topic, conversation: eventConversation(payload, me), data: payload as unknown as RecallEvent };
      case "read_receipt":
        return {
          kind: "receipt",
          topic,
          conversation: eventConversation(payload, me),
          data: payload as unknown as ReceiptPrivate | ReceiptGroup,
        };
      case "read_position":
        return {
          kind: "read_position",
          topic,
          conversation: eventConversation(payload, me),
          data: payload as unknown as ReadPosition,
        };
      case "stream_start":
      case "stream_delta":
      case "stream_cancel":
      case "task_status":
      case "typing": {
        // Checked at the boundary: a payload without its conversation or with a wrong shape is "other".
        const conversation = eventConversation(payload, me);
        if (!conversation || !hasShape(payload)) return { kind: "other", topic, data: payload };
        return { kind: payload.type, topic, conversation, data: payload } as Delivery;
      }
    }
    if (isMessagePayload(payload)) {
      return {
        kind: "message",
        topic,
        conversation: messageConversation(payload, me),
        message: payload,
        recovered: false,
      };
    }
  }
  return { kind: "other", topic, data: payload };
}

type AgentDelivery = StreamStart | StreamDelta | StreamCancel | TaskStatus | TypingEvent;

/** The fields the client relies on for each of §13's deliveries. */
function hasShape(p: Obj): p is Obj & AgentDelivery {
  const str = (k: string) => typeof p[k] === "string";
  const int = (k: string) => typeof p[k] === "number" && Number.isInteger(p[k]);
  if (!str("from_employee_id")) return false;
  switch (p.type) {
    case "stream_start":
      return str("msg_id") && int("seq");
    case "stream_delta":
      return str("msg_id") && int("seq") && int("offset") && str("delta") && int("length");
    case "stream_cancel":
      return str("msg_id") && int("seq") && str("content");
    case "task_status":
      return str("msg_id") && str("state");
    case "typing":
      return typeof p.active === "boolean" && str("expires_at");
    default:
      return false;
  }
}

function parse(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}
