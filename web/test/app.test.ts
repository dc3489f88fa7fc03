// The page's actions against the fake broker (no browser): opening a conversation, scrolling
// back with before_seq, a failed send retried with its seq_id, reading moves the position.
import { describe, expect, it } from "vitest";
import { MChatClient } from "../src/client/client";
import type { MessagePayload } from "../src/client/types";
import { ChatApp } from "../src/state/app";
import { FakeBroker, waitFor, credentialFor } from "./fakeBroker";

const ME = "emp_me_001";
const PEER = "emp_peer_002";
const KEY = `private:${PEER}`;

function msg(seq: number): MessagePayload {
  return { msg_id: `msg_${seq}`, type: "private", from_employee_id: PEER, to_employee_id: ME, content: `m${seq}`, sent_at: "2026-12-02T06:00:00.000Z", seq };
}

const credential = credentialFor(ME);

async function setup(handler: FakeBroker["handler"]) {
  const broker = new FakeBroker();
  broker.handler = (req) => {
    if (req.action === "group.list") return { code: 0, data: { groups: [] } };
    if (req.action === "conversation.list") return { code: 0, data: { conversations: [], next_cursor: null } };
    if (req.action === "org.tree") return { code: 0, data: { version: "1", departments: [], employees: [{ employee_id: PEER, name: "同事" }] } };
    return handler(req);
  };
  const client = new MChatClient({ credentials: async () => credential, transport: broker.factory, requestTimeoutMs: 300, retries: 0 });
  const app = new ChatApp(client);
  await app.start();
  return { broker, app };
}

describe("ChatApp", () => {
  it("opens a conversation at its newest page, scrolls back with before_seq, and moves the read position", async () => {
    const { broker, app } = await setup(({ action, fields }) => {
      if (action === "msg.history") {
        const before = fields.before_seq === undefined ? 61 : Number(fields.before_seq);
        const seqs = Array.from({ length: 60 }, (_, i) => i + 1).filter((s) => s < before).slice(-30);
        return { code: 0, data: { messages: seqs.map(msg), has_more: seqs[0] > 1, last_seq: 60, last_read_seq: 10 } };
      }
      if (action === "msg.read_ack") return { code: 0, data: { msg_id: fields.msg_id, last_read_seq: 60, read_at: "t" } };
      return { code: 0, data: {} };
    });
    await app.open({ type: "private", id: PEER });
    const thread = app.store.state.threads.get(KEY);
    expect(thread?.messages.map((m) => m.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 31));
    expect(thread?.hasMoreBefore).toBe(true);
    expect(app.store.state.conversations.get(KEY)?.name).toBe("同事");
    await waitFor(() => broker.requests("msg.read_ack").length === 1);
    expect(broker.requests("msg.read_ack")[0].body).toMatchObject({ msg_id: "msg_60", peer_employee_id: PEER });
    expect(app.store.state.conversations.get(KEY)?.unread).toBe(0);

    await app.loadOlder(KEY);
    expect(broker.requests("msg.history").at(-1)?.body).toMatchObject({ before_seq: 31, limit: 30 });
    expect(thread?.messages.map((m) => m.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(thread?.hasMoreBefore).toBe(false);
  });

  it("a failed send stays in the thread as failed; retry sends it again with the same seq_id", async () => {
    let fail = true;
    const { broker, app } = await setup(({ action }) => {
      if (action === "msg.history") return { code: 0, data: { messages: [], has_more: false, last_seq: 0, last_read_seq: 0 } };
      if (action === "msg.send_private") {
        return fail ? { code: 500, message: "服务端错误 (error_id=x)" } : { code: 0, data: { msg_id: "msg_1", seq: 1, sent_at: "t" } };
      }
      return { code: 0, data: {} };
    });
    await app.open({ type: "private", id: PEER });
    await app.sendText(KEY, "你好");
    const thread = app.store.state.threads.get(KEY);
    expect(thread?.messages).toHaveLength(1);
    expect(thread?.messages[0]).toMatchObject({ status: "failed", content: "你好", msgId: null });
    const firstSeqId = broker.requests("msg.send_private")[0].seqId;
    fail = false;
    app.retry(KEY, thread!.messages[0]);
    await waitFor(() => thread?.messages[0].status === "sent");
    expect(thread?.messages).toHaveLength(1);
    expect(thread?.messages[0]).toMatchObject({ msgId: "msg_1", seq: 1 });
    expect(broker.requests("msg.send_private").map((r) => r.seqId)).toEqual([firstSeqId, firstSeqId]);
  });
});
