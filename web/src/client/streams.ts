// The text of open streamed messages (docs/protocol.md §13.2-13.5): deltas are appended at their
// offset; a delta beyond the text held means one was missed (they are QoS 0), so the text so far
// is fetched (msg.history serves an open stream with its text so far) and the waiting deltas are
// applied on top. A stream that ended or was canceled is remembered for a while, so that a late
// `streaming: true` copy (a history page answered just before the end) never brings it back.
import type { ConversationRef, MessagePayload, StreamDelta } from "./types";

export interface StreamTrackerHooks {
  /** The text of an open stream changed: `text` is all of it so far. */
  text(conversation: ConversationRef, delta: StreamDelta, text: string): void;
  /** The message at `seq` of a conversation as the server has it now. */
  fetch(conversation: ConversationRef, seq: number): Promise<MessagePayload | undefined>;
  /** A followed stream turned out to have finished (its end was missed while away). */
  ended(conversation: ConversationRef, m: MessagePayload): void;
}

interface OpenStream {
  conversation: ConversationRef;
  seq: number;
  text: string;
  /** Deltas that start beyond `text`, waiting for the fetched text so far. */
  waiting: StreamDelta[];
  fetching: boolean;
}

const OPEN_MAX = 1000;
const FINISHED_MAX = 500;
const FETCH_ATTEMPTS = 3;

function textOf(m: MessagePayload): string {
  return typeof m.content === "string" ? m.content : "";
}

export class StreamTracker {
  private readonly open = new Map<string, OpenStream>();
  /** msg_id -> what a finished stream's message is now (content, streaming: false, canceled). */
  private readonly finished = new Map<string, Partial<MessagePayload>>();

  constructor(private readonly hooks: StreamTrackerHooks) {}

  /** The text held for an open stream, if any. */
  textOf(msgId: string): string | undefined {
    return this.open.get(msgId)?.text;
  }

  isOpen(msgId: string): boolean {
    return this.open.has(msgId);
  }

  /** A streamed message about to be handed out (a delivery, a history page): an open one
   * carries the longest text known and is followed from now on; one known to have finished
   * comes in its final form. Other messages are returned unchanged. */
  normalize(conversation: ConversationRef, m: MessagePayload): MessagePayload {
    if (!m.stream) return m;
    const done = this.finished.get(m.msg_id);
    if (!m.streaming) {
      this.finish(m.msg_id, { content: m.content, streaming: false, canceled: m.canceled });
      return m;
    }
    if (done) return { ...m, ...done };
    const content = textOf(m);
    const s = this.open.get(m.msg_id);
    if (!s) {
      this.remember(m.msg_id, { conversation, seq: m.seq, text: content, waiting: [], fetching: false });
      return m;
    }
    if (content.length > s.text.length) s.text = content;
    return s.text === content ? m : { ...m, content: s.text };
  }

  /** The stream ended (its final message) or was canceled: forget its text, remember its end. */
  finish(msgId: string, final: Partial<MessagePayload>): void {
    this.open.delete(msgId);
    this.finished.delete(msgId);
    this.finished.set(msgId, final);
    if (this.finished.size > FINISHED_MAX) {
      const oldest = this.finished.keys().next().value;
      if (oldest !== undefined) this.finished.delete(oldest);
    }
  }

  /** A stream_delta delivery. */
  delta(conversation: ConversationRef, d: StreamDelta): void {
    if (this.finished.has(d.msg_id)) return;
    let s = this.open.get(d.msg_id);
    if (!s) {
      // Its start was not seen (or is still held back for an earlier gap): follow it from here.
      s = { conversation, seq: d.seq, text: "", waiting: [], fetching: false };
      this.remember(d.msg_id, s);
    }
    if (d.offset <= s.text.length) {
      if (this.extend(s, d)) this.hooks.text(s.conversation, d, s.text);
      return;
    }
    s.waiting.push(d);
    void this.catchUp(d.msg_id, s);
  }

  private remember(msgId: string, s: OpenStream): void {
    this.open.set(msgId, s);
    if (this.open.size > OPEN_MAX) {
      const oldest = this.open.keys().next().value;
      if (oldest !== undefined) this.open.delete(oldest);
    }
  }

  /** Put `d` where it starts; false when it changes nothing (a repeat). A delta that differs
   * from the text held at its offset wins: the server's text is shorter after a bridge restart
   * lost its last seconds, and the stream goes on from there (§13.2). */
  private extend(s: OpenStream, d: StreamDelta): boolean {
    if (d.offset > s.text.length) return false;
    if (s.text.slice(d.offset, d.offset + d.delta.length) === d.delta) return false;
    s.text = s.text.slice(0, d.offset) + d.delta;
    return true;
  }

  /** After a reconnect: look at every stream still followed; one that ended meanwhile is
   * handed to `ended`, one still open gets the text so far. */
  async refresh(): Promise<void> {
    for (const [msgId, s] of [...this.open]) {
      const m = await this.hooks.fetch(s.conversation, s.seq).catch(() => undefined);
      if (!m || m.msg_id !== msgId || this.open.get(msgId) !== s) continue;
      if (!m.streaming) {
        this.finish(msgId, { content: m.content, streaming: false, canceled: m.canceled });
        this.hooks.ended(s.conversation, m);
      } else if (textOf(m).length > s.text.length) {
        s.text = textOf(m);
        const whole: StreamDelta = {
          type: "stream_delta",
          conversation_type: s.conversation.type,
          from_employee_id: m.from_employee_id,
          msg_id: msgId,
          seq: s.seq,
          offset: 0,
          delta: s.text,
          length: s.text.length,
        };
        this.hooks.text(s.conversation, whole, s.text);
      }
    }
  }

  private async catchUp(msgId: string, s: OpenStream): Promise<void> {
    if (s.fetching) return;
    s.fetching = true;
    try {
      for (let attempt = 0; attempt < FETCH_ATTEMPTS && s.waiting.length; attempt++) {
        const m = await this.hooks.fetch(s.conversation, s.seq).catch(() => undefined);
        if (this.open.get(msgId) !== s) return; // ended or canceled meanwhile
        const before = s.text;
        if (m && m.msg_id === msgId && m.streaming && textOf(m).length > s.text.length) s.text = textOf(m);
        let last = s.waiting[0];
        const still: StreamDelta[] = [];
        for (const d of s.waiting.sort((a, b) => a.offset - b.offset)) {
          if (d.offset > s.text.length) still.push(d);
          else {
            this.extend(s, d);
            last = d;
          }
        }
        s.waiting = still;
        if (s.text !== before) this.hooks.text(s.conversation, last, s.text);
      }
      // Still a hole after a few tries: the final message will bring the whole text.
      s.waiting = [];
    } finally {
      s.fetching = false;
    }
  }
}
