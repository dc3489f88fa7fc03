// Streamed messages, task states and typing (docs/protocol.md §13) in the client library, the
// store and the page's actions, against the fake broker.
import { describe, expect, it } from "vitest";
import { type ClientEvent, MChatClient } from "../src/client/client";
import { classify } from "../src/client/deliveries";
import type { MessagePayload } from "../src/client/types";
import { ChatApp } from "../src/state/app";
import { dispatch, type DispatchHooks } from "../src/state/dispatch";
import { Store } from "../src/state/store";
import { FakeBroker, waitFor, credentialFor } from "./fakeBroker";

const ME = "emp_me_001";
const AGENT = "ai_writer_001";
const INBOX = `mchat/inbox/${ME}`;
const agentRef = { type: "private" as const, id: AGENT };

const credential = credentialFor(ME);

const where = { conversation_type: "private", from_employee_id: AGENT, to_employee_id: ME };

function start(seq: number, msgId = `msg_${seq}`) {
  return { ...where, type: "stream_start", msg_id: msgId, seq, sent_at: "2026-12-02T06:00:00.000Z" };
}

function delta(seq: number, offset: number, text: string, msgId = `msg_${seq}`) {
  return { ...where, type: "stream_delta", msg_id: msgId, seq, offset, delta: text, length: offset + text.length };
}

function message(seq: number, content: string, extra: Partial<MessagePayload> = {}): MessagePayload {
  return { msg_id: `msg_${seq}`, type: "private", from_employee_id: AGENT, to_employee_id: ME, content, sent_at: "2026-12-02T06:00:00.000Z", seq, ...extra };
}

function setup(handler: FakeBroker["handler"] = () => undefined) {
  const broker = new FakeBroker();
  broker.handler = (req) => {
    if (req.action === "group.list") return { code: 0, data: { groups: [] } };
    if (req.action === "conversation.list") return { code: 0, data: { conversations: [], next_cursor: null } };
    if (req.action === "org.tree") {
      return { code: 0, data: { version: "1", departments: [], employees: [{ employee_id: AGENT, name: "写作助手", is_ai_agent: true }] } };
    }
    return handler(req) ?? { code: 0, data: {} };
  };
  const client = new MChatClient({ credentials: async () => credential, transport: broker.factory, requestTimeoutMs: 300, retries: 0, gapWaitMs: 30, backoffInitialMs: 10, backoffMaxMs: 40 });
  const events: ClientEvent[] = [];
  client.on("*", (e) => events.push(e));
  const of = <K extends ClientEvent["kind"]>(kind: K) => events.filter((e): e is Extract<ClientEvent, { kind: K }> => e.kind === kind);
  return { broker, client, events, of };
}

describe("streams in the client library", () => {
  it("an open stream takes its seq, grows by deltas, and its final form comes once as an update", async () => {
    const { broker, client, of } = setup();
    await client.connect();
    broker.deliver(INBOX, message(1, "写一段介绍", { from_employee_id: ME, to_employee_id: AGENT }));
    broker.deliver(INBOX, start(2));
    broker.deliver(INBOX, delta(2, 0, "您好，"));
    broker.deliver(INBOX, delta(2, 3, "这是"));
    broker.deliver(INBOX, delta(2, 3, "这是")); // a repeat adds nothing
    broker.deliver(INBOX, delta(2, 5, "介绍。"));
    await waitFor(() => of("stream_delta").length === 3);
    expect(of("message").map((e) => [e.message.seq, e.message.streaming ?? false])).toEqual([
      [1, false],
      [2, true],
    ]);
    expect(of("stream_delta").map((e) => e.text)).toEqual(["您好，", "您好，这是", "您好，这是介绍。"]);
    expect(client.streamText("msg_2")).toBe("您好，这是介绍。");
    broker.deliver(INBOX, { ...message(2, "您好，这是完整的介绍。"), stream: true });
    broker.deliver(INBOX, message(3, "还有问题吗？"));
    await waitFor(() => of("message").length === 4);
    const [final] = of("message").filter((e) => e.update);
    expect(final.message).toMatchObject({ msg_id: "msg_2", seq: 2, content: "您好，这是完整的介绍。", stream: true });
    expect(of("message").map((e) => e.message.seq)).toEqual([1, 2, 2, 3]);
    expect(client.streamText("msg_2")).toBeUndefined();
    expect(broker.requests("msg.history")).toHaveLength(0);
  });

  it("a missed delta: the text so far is fetched (history at the stream's seq), waiting deltas go on top", async () => {
    const { broker, client, of } = setup(({ action }) => {
      if (action !== "msg.history") return undefined;
      return { code: 0, data: { messages: [message(4, "第一句。第二句。", { stream: true, streaming: true })], has_more: true, last_seq: 4, last_read_seq: 0 } };
    });
    await client.connect();
    client.noteSeq(agentRef, 3);
    broker.deliver(INBOX, start(4));
    broker.deliver(INBOX, delta(4, 0, "第一句。"));
    // "第二句。" (offset 4) is lost; the next one starts at 8.
    broker.deliver(INBOX, delta(4, 8, "第三句。"));
    await waitFor(() => of("stream_delta").at(-1)?.text === "第一句。第二句。第三句。");
    const [h] = broker.requests("msg.history");
    expect(h.body).toMatchObject({ conversation_type: "private", peer_employee_id: AGENT, after_seq: 3, limit: 1 });
  });

  it("a final form that overtakes its open form (held back for a gap): the stream is handed out finished", async () => {
    const { broker, client, of } = setup(({ action }) =>
      action === "msg.history" ? { code: 0, data: { messages: [], has_more: false, last_seq: 3, last_read_seq: 0 } } : undefined,
    );
    await client.connect();
    broker.deliver(INBOX, message(1, "a"));
    broker.deliver(INBOX, start(3)); // seq 2 missing: held back
    broker.deliver(INBOX, { ...message(3, "完整答案"), stream: true });
    await waitFor(() => of("message").length === 2);
    expect(of("message")[1].message).toMatchObject({ seq: 3, content: "完整答案", stream: true });
    expect(of("message")[1].message.streaming).toBeFalsy();
  });

  it("a cancel: the event with the text it keeps; a history page still showing it open is corrected", async () => {
    const { broker, client, of } = setup(({ action }) =>
      action === "msg.history"
        ? { code: 0, data: { messages: [message(5, "很长", { stream: true, streaming: true })], has_more: false, last_seq: 5, last_read_seq: 0 } }
        : undefined,
    );
    await client.connect();
    broker.deliver(INBOX, start(5));
    broker.deliver(INBOX, delta(5, 0, "很长的回答"));
    broker.deliver(INBOX, { ...where, type: "stream_cancel", msg_id: "msg_5", seq: 5, content: "很长的回答", canceled_by: ME, canceled_at: "t" });
    await waitFor(() => of("stream_cancel").length === 1);
    expect(of("stream_cancel")[0].conversation).toEqual(agentRef);
    const page = await client.history(agentRef);
    expect(page.messages[0]).toMatchObject({ content: "很长的回答", streaming: false, canceled: true });
    broker.deliver(INBOX, delta(5, 5, "……")); // a late delta of a canceled stream is ignored
    await new Promise((r) => setTimeout(r, 20));
    expect(of("stream_delta")).toHaveLength(1);
  });

  it("a delta that differs from the text held at its offset wins (the server lost its last seconds in a restart)", async () => {
    const { broker, client, of } = setup();
    await client.connect();
    broker.deliver(INBOX, start(6));
    broker.deliver(INBOX, delta(6, 0, "存下的。未存的部分。"));
    broker.deliver(INBOX, delta(6, 4, "重启后"));
    await waitFor(() => of("stream_delta").length === 2);
    expect(of("stream_delta")[1].text).toBe("存下的。重启后");
  });

  it("after a reconnect a stream whose end was missed is handed out finished", async () => {
    let ended = false;
    const { broker, client, of, events } = setup(({ action }) =>
      action === "msg.history" && ended
        ? { code: 0, data: { messages: [{ ...message(7, "离线时写完的全文"), stream: true, streaming: false }], has_more: false, last_seq: 7, last_read_seq: 0 } }
        : undefined,
    );
    await client.connect();
    broker.deliver(INBOX, start(7));
    broker.deliver(INBOX, delta(7, 0, "离线"));
    await waitFor(() => of("stream_delta").length === 1);
    ended = true;
    broker.dropAll(); // the final message is published while the page is away
    await waitFor(() => events.some((e) => e.kind === "resync"));
    const finals = of("message").filter((e) => e.update);
    expect(finals.map((e) => [e.message.msg_id, e.message.content])).toEqual([["msg_7", "离线时写完的全文"]]);
    expect(client.streamText("msg_7")).toBeUndefined();
  });

  it("task_status and typing are typed deliveries of the conversation with the agent", () => {
    const task = classify(INBOX, JSON.stringify({ type: "task_status", task_id: "msg_1", msg_id: "msg_1", seq: 1, conversation_type: "private", from_employee_id: ME, to_employee_id: AGENT, agent_id: AGENT, state: "working", status_text: "查询中", updated_by: AGENT, updated_at: "t" }), ME);
    expect(task).toMatchObject({ kind: "task_status", conversation: agentRef, data: { state: "working" } });
    const typing = classify(INBOX, JSON.stringify({ type: "typing", ...where, is_ai_agent: true, status_text: "正在查询订单…", active: true, expires_at: "t" }), ME);
    expect(typing).toMatchObject({ kind: "typing", conversation: agentRef });
    const group = classify("mchat/group/grp_1", JSON.stringify({ type: "typing", conversation_type: "group", group_id: "grp_1", from_employee_id: AGENT, active: false, expires_at: "t" }), ME);
    expect(group).toMatchObject({ kind: "typing", conversation: { type: "group", id: "grp_1" } });
    // A delta without its offset is not trusted as one.
    expect(classify(INBOX, JSON.stringify({ ...delta(2, 0, "x"), offset: "0" }), ME)?.kind).toBe("other");
  });

  it("the typed actions send the documented fields", async () => {
    const { broker, client } = setup(({ action }) => (action === "agent.task_update" ? { code: 0, data: { state: "canceled" } } : undefined));
    await client.connect();
    await client.streamCancel("msg_5");
    await client.taskUpdate("msg_1", "canceled");
    await client.typing(agentRef);
    await client.typing({ type: "group", id: "grp_1" }, { active: false });
    await client.streamStart({ type: "group", id: "grp_1" }, { replyTo: "msg_1" });
    await client.streamAppend("msg_7", "你好");
    await client.streamEnd("msg_7");
    const bodies = broker.requests().filter((r) => !["group.list"].includes(String(r.body.action))).map((r) => r.body);
    expect(bodies).toEqual([
      { action: "msg.stream_cancel", msg_id: "msg_5" },
      { action: "agent.task_update", msg_id: "msg_1", state: "canceled" },
      { action: "conversation.typing", peer_employee_id: AGENT },
      { action: "conversation.typing", group_id: "grp_1", active: false },
      { action: "msg.stream_start", group_id: "grp_1", reply_to: "msg_1" },
      { action: "msg.stream_append", msg_id: "msg_7", delta: "你好" },
      { action: "msg.stream_end", msg_id: "msg_7" },
    ]);
  });
});

function storeSetup() {
  const store = new Store();
  store.state.me = { employee_id: ME, name: "我" };
  let typingChanges = 0;
  const hooks: DispatchHooks = { maybeMarkRead() {}, groupChanged() {}, fillThread() {}, typingChanged: () => (typingChanges += 1) };
  const key = `private:${AGENT}`;
  const thread = store.thread(key);
  thread.loaded = true;
  const send = (e: ClientEvent) => dispatch(store, e, hooks);
  return { store, hooks, key, thread, send, typingChanges: () => typingChanges };
}

describe("streams, tasks and typing in the store", () => {
  it("a stream grows in place and becomes the final message without a duplicate", () => {
    const { store, key, thread, send } = storeSetup();
    send({ kind: "message", topic: INBOX, conversation: agentRef, message: message(1, "", { stream: true, streaming: true }), recovered: false });
    send({ kind: "stream_delta", topic: INBOX, conversation: agentRef, data: delta(1, 0, "正在") as never, text: "正在写" });
    expect(thread.messages).toHaveLength(1);
    expect(thread.messages[0]).toMatchObject({ content: "正在写", streaming: true });
    expect(store.state.conversations.get(key)?.lastMessage?.content).toBe("正在写");
    send({ kind: "message", topic: INBOX, conversation: agentRef, message: message(1, "正在写的全文", { stream: true }), recovered: false, update: true });
    expect(thread.messages).toHaveLength(1);
    expect(thread.messages[0]).toMatchObject({ content: "正在写的全文", streaming: false });
    // A stale open copy (an earlier history page) does not reopen it.
    send({ kind: "stream_delta", topic: INBOX, conversation: agentRef, data: delta(1, 0, "正在") as never, text: "正在" });
    expect(thread.messages[0]).toMatchObject({ content: "正在写的全文", streaming: false });
  });

  it("a cancel keeps the text so far and marks it stopped", () => {
    const { thread, send } = storeSetup();
    send({ kind: "message", topic: INBOX, conversation: agentRef, message: message(1, "一半", { stream: true, streaming: true }), recovered: false });
    send({ kind: "stream_cancel", topic: INBOX, conversation: agentRef, data: { ...where, type: "stream_cancel", msg_id: "msg_1", seq: 1, content: "一半的答案", canceled_by: ME, canceled_at: "t" } as never });
    expect(thread.messages[0]).toMatchObject({ content: "一半的答案", streaming: false, canceled: true });
  });

  it("task states: the newest wins, a final one never changes; history fills them in", () => {
    const { store, send } = storeSetup();
    const status = (state: string, at: string) =>
      send({ kind: "task_status", topic: INBOX, conversation: agentRef, data: { type: "task_status", task_id: "msg_1", msg_id: "msg_1", seq: 1, ...where, from_employee_id: ME, to_employee_id: AGENT, agent_id: AGENT, state, status_text: state === "working" ? "正在查询" : "", updated_by: AGENT, updated_at: at } as never });
    status("working", "2026-12-02T06:00:01.000Z");
    expect(store.state.tasks.get("msg_1")).toMatchObject({ state: "working", statusText: "正在查询" });
    status("submitted", "2026-12-02T06:00:00.000Z"); // older: ignored
    expect(store.state.tasks.get("msg_1")?.state).toBe("working");
    status("completed", "2026-12-02T06:00:02.000Z");
    status("failed", "2026-12-02T06:00:03.000Z"); // after a final state: ignored
    expect(store.state.tasks.get("msg_1")?.state).toBe("completed");
    send({ kind: "message", topic: INBOX, conversation: agentRef, message: message(2, "问题", { from_employee_id: ME, to_employee_id: AGENT, task_state: "input-required", task_status_text: "请提供订单号", task_updated_at: "t" }), recovered: false });
    expect(store.state.tasks.get("msg_2")).toMatchObject({ state: "input-required", statusText: "请提供订单号" });
  });

  it("typing: shown until it expires, cleared by active:false and by the next message; my own ignored", () => {
    const { store, key, send, typingChanges } = storeSetup();
    const typing = (from: string, active: boolean, inMs: number, status = "") =>
      send({ kind: "typing", topic: INBOX, conversation: agentRef, data: { type: "typing", ...where, from_employee_id: from, is_ai_agent: from === AGENT, status_text: status, active, expires_at: new Date(Date.now() + inMs).toISOString() } as never });
    typing(AGENT, true, 30_000, "正在查询订单…");
    expect(store.typingIn(key).map((x) => x.statusText)).toEqual(["正在查询订单…"]);
    expect(typingChanges()).toBe(1);
    expect(store.pruneTyping(Date.now() + 31_000)).toBeNull();
    expect(store.typingIn(key)).toEqual([]);
    typing(AGENT, true, 30_000);
    send({ kind: "message", topic: INBOX, conversation: agentRef, message: message(3, "答案"), recovered: false });
    expect(store.typingIn(key)).toEqual([]);
    typing(AGENT, true, 30_000);
    typing(AGENT, false, 0);
    expect(store.typingIn(key)).toEqual([]);
    typing(ME, true, 6_000);
    expect(store.typingIn(key)).toEqual([]);
    // A person's indicator issued before their latest message (overtaken on the way) is over.
    const person = (sentAt: string, expiresAt: string) => {
      send({ kind: "message", topic: INBOX, conversation: agentRef, message: message(9, "好", { from_employee_id: "emp_x", sent_at: sentAt }), recovered: false });
      send({ kind: "typing", topic: INBOX, conversation: agentRef, data: { type: "typing", ...where, from_employee_id: "emp_x", is_ai_agent: false, active: true, expires_at: expiresAt } as never });
    };
    person("2026-12-02T06:00:05.000Z", "2026-12-02T06:00:10.000Z");
    expect(store.typingIn(key)).toEqual([]);
    // A page clock far off: an agent's status lasts its usual 30 s from now.
    typing(AGENT, true, 10 * 60_000);
    const [x] = store.typingIn(key);
    expect(x.expiresAt - Date.now()).toBeLessThanOrEqual(30_000);
  });
});

describe("the page's actions", () => {
  async function appSetup() {
    const { broker, client } = setup(({ action }) => {
      if (action === "msg.history") return { code: 0, data: { messages: [message(1, "你好")], has_more: false, last_seq: 1, last_read_seq: 1 } };
      if (action === "conversation.typing") return { code: 0, data: { expires_at: "t", delivered: true } };
      if (action === "msg.stream_cancel") return { code: 0, data: { msg_id: "msg_2", seq: 2, length: 2, canceled_at: "t" } };
      return undefined;
    });
    const app = new ChatApp(client);
    await app.start();
    return { broker, app };
  }

  it("typing is sent while I type, at most every 3.5 s, and cleared when the draft is emptied; never to an agent", async () => {
    const { broker, app } = await appSetup();
    const PEER = "emp_peer_002";
    app.store.state.employees.set(PEER, { employee_id: PEER, name: "同事" });
    await app.open({ type: "private", id: PEER });
    app.draftChanged(`private:${PEER}`, "在");
    app.draftChanged(`private:${PEER}`, "在吗");
    app.draftChanged(`private:${PEER}`, "在吗？");
    app.draftChanged(`private:${PEER}`, "");
    await waitFor(() => broker.requests("conversation.typing").length === 2);
    expect(broker.requests("conversation.typing").map((r) => r.body)).toEqual([
      { action: "conversation.typing", peer_employee_id: PEER },
      { action: "conversation.typing", peer_employee_id: PEER, active: false },
    ]);
    await app.open(agentRef);
    app.draftChanged(`private:${AGENT}`, "你好");
    await new Promise((r) => setTimeout(r, 20));
    expect(broker.requests("conversation.typing")).toHaveLength(2);
  });

  it("Stop sends msg.stream_cancel and the message shows stopped", async () => {
    const { broker, app } = await appSetup();
    await app.open(agentRef);
    broker.deliver(INBOX, start(2));
    broker.deliver(INBOX, delta(2, 0, "一半"));
    const thread = app.store.state.threads.get(`private:${AGENT}`);
    await waitFor(() => thread?.messages.find((m) => m.seq === 2)?.content === "一半");
    const item = thread?.messages.find((m) => m.seq === 2);
    await app.stopStream(item!);
    expect(broker.requests("msg.stream_cancel")[0].body).toEqual({ action: "msg.stream_cancel", msg_id: "msg_2" });
    expect(item).toMatchObject({ streaming: false, canceled: true, content: "一半" });
  });
});
