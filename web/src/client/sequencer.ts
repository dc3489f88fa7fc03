// Per-conversation ordering by seq (docs/protocol.md §10 "Gaps"): messages are handed out in
// seq order without repeats; a gap is waited for a moment (out-of-order deliveries from
// several server processes) and then filled by a fetch (msg.history after_seq).
import type { MessagePayload } from "./types";

export interface SequencerHooks {
  /** Hand out messages, in seq order. */
  emit(messages: MessagePayload[], recovered: boolean): void;
  /** Fetch the messages with after < seq < before (before undefined: all newer). */
  fetch(after: number, before: number | undefined): Promise<MessagePayload[]>;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export class Sequencer {
  /** The highest seq handed out (or known to be held); undefined until the first. */
  last: number | undefined;
  private buffer = new Map<number, MessagePayload>();
  private timer: unknown = null;
  private fetching = false;

  constructor(
    private readonly hooks: SequencerHooks,
    private readonly gapWaitMs: number,
  ) {}

  /** The caller holds everything up to `seq` (history, conversation.list): never hand it out again. */
  note(seq: number): void {
    if (this.last === undefined || seq > this.last) {
      this.last = seq;
      for (const s of [...this.buffer.keys()]) if (s <= seq) this.buffer.delete(s);
      this.drain();
    }
  }

  push(message: MessagePayload): void {
    const seq = message.seq;
    if (this.last === undefined) {
      this.last = seq;
      this.hooks.emit([message], false);
      this.drain();
      return;
    }
    if (seq <= this.last || this.buffer.has(seq)) return; // a repeat
    this.buffer.set(seq, message);
    this.drain();
    if (this.buffer.size > 0 && this.timer === null && !this.fetching) {
      this.timer = this.hooks.setTimer(() => {
        this.timer = null;
        void this.fill();
      }, this.gapWaitMs);
    }
  }

  /** Fetch what is newer than `last` (after a reconnect). */
  async catchUp(lastSeqOnServer: number): Promise<void> {
    if (this.last === undefined || lastSeqOnServer <= this.last) return;
    await this.fill(lastSeqOnServer + 1);
  }

  private drain(): void {
    if (this.last === undefined) return;
    const out: MessagePayload[] = [];
    for (;;) {
      const next = this.buffer.get(this.last + 1);
      if (!next) break;
      this.buffer.delete(this.last + 1);
      this.last += 1;
      out.push(next);
    }
    if (out.length) this.hooks.emit(out, false);
    if (this.buffer.size === 0 && this.timer !== null) {
      this.hooks.clearTimer(this.timer);
      this.timer = null;
    }
  }

  private flushHeld(): void {
    const held = [...this.buffer.values()].sort((a, b) => a.seq - b.seq);
    this.buffer.clear();
    if (held.length) {
      this.last = held[held.length - 1].seq;
      this.hooks.emit(held, false);
    }
  }

  private async fill(until?: number): Promise<void> {
    if (this.fetching || this.last === undefined) return;
    const lowest = this.buffer.size ? Math.min(...this.buffer.keys()) : until;
    if (lowest === undefined || lowest <= this.last + 1) return this.drain();
    this.fetching = true;
    try {
      const found = await this.hooks.fetch(this.last, this.buffer.size ? lowest : undefined);
      const fresh = found.filter((m) => this.last !== undefined && m.seq > this.last).sort((a, b) => a.seq - b.seq);
      const emitted: MessagePayload[] = [];
      for (const m of fresh) {
        if (this.last !== undefined && m.seq > this.last) {
          this.buffer.delete(m.seq);
          this.last = m.seq;
          emitted.push(m);
        }
      }
      if (emitted.length) this.hooks.emit(emitted, true);
      else this.flushHeld(); // the server has nothing to fill it with: do not wait forever
    } catch {
      this.flushHeld(); // could not fetch: hand out what arrived rather than hold it back
    } finally {
      this.fetching = false;
    }
    this.drain();
    if (this.buffer.size > 0 && this.timer === null) {
      this.timer = this.hooks.setTimer(() => {
        this.timer = null;
        void this.fill();
      }, this.gapWaitMs);
    }
  }
}
