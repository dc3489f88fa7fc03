// The store and its one dispatcher, without a browser: unread counts, read positions, receipts,
// recall, pending sends becoming sent messages, placing by seq, group notices.
import { describe, expect, it } from "vitest";
import type { MessagePayload } from "../src/client";
import { applySummaries, dispatch, type DispatchHooks } from "../src/state/dispatch";
import { type MessageItem, Store, placeMessage } from "../src/state/store";

const ME = "emp_me_001";
const PEER = "emp_peer_002";
const peerRef = { type: "private" as const, id: PEER };

function msg(seq: number, from = PEER, content: MessagePayload["content"] = `m${seq}`): MessagePayload {
  return { msg_id: `msg_${seq}`, type: "private", from_employee_id: from, to_employee_id: from === ME ? PEER : ME, content, sent_at: `2026-12-02T06:00:0${seq % 10}.000Z`, seq };
}

function setup() {
  const store = new Store();
  store.state.me = { employee_id: ME, name: "我" };
  store.state.employees.set(PEER, { employee_id: PEER, name: "同事" });
  const calls: string[] = [];
  const hooks: DispatchHooks = {
    maybeMarkRead: (key) => calls.push(`read:${key}`),
    groupChanged: (gid) => calls.push(`group:${gid}`),
    fillThread: (key) => calls.push(`fill:${key}`),
    typingChanged: () => calls.push("typing"),
  };
  const message = (m: MessagePayload) =>
    dispatch(store, { kind: "message", topic: `mchat/inbox/${ME}`, conversation: peerRef, message: m, recovered: false }, hooks);
  return { store, hooks, calls, message };
}

describe("dispatch", () => {
  it("counts unread from others, not my own, and sorts the list newest first", () => {
    const { store, message, calls } = setup();
    message(msg(1));
    message(msg(2));
    const c = store.state.conversations.get(`private:${PEER}`);
    expect(c?.unread).toBe(2);
    expect(c?.name).toBe("同事");
    expect(store.totalUnread()).toBe(2);
    message(msg(3, ME));
    expect(c?.unread).toBe(0); // sending moves my read position
    expect(calls).toContain(`read:private:${PEER}`);
    dispatch(store, { kind: "message", topic: "mchat/group/grp_1", conversation: { type: "group", id: "grp_1" }, message: { ...msg(1), group_id: "grp_1", to_employee_id: undefined, sent_at: "2026-12-02T07:00:00.000Z" }, recovered: false }, { maybeMarkRead() {}, groupChanged() {}, fillThread() {}, typingChanged() {} });
    expect(store.sortedConversations().map((x) => x.key)).toEqual(["group:grp_1", `private:${PEER}`]);
  });

  it("read_position from my other device and receipts from the peer", () => {
    const { store, message, hooks } = setup();
    message(msg(1));
    message(msg(2));
    dispatch(store, { kind: "read_position", topic: "", conversation: peerRef, data: { type: "read_position", conversation_type: "private", peer_employee_id: PEER, last_read_seq: 2, read_at: "t" } }, hooks);
    expect(store.state.conversations.get(`private:${PEER}`)?.unread).toBe(0);
    dispatch(store, { kind: "receipt", topic: "", conversation: peerRef, data: { type: "read_receipt", conversation_type: "private", reader_id: PEER, msg_id: "msg_2", seq: 2, read_at: "t" } }, hooks);
    expect(store.state.conversations.get(`private:${PEER}`)?.peerReadSeq).toBe(2);
  });

  it("a recall empties the message and the list's preview", () => {
    const { store, message, hooks } = setup();
    const thread = store.thread(`private:${PEER}`);
    thread.loaded = true;
    message(msg(1));
    dispatch(store, { kind: "recall", topic: "", conversation: peerRef, data: { type: "recall", msg_id: "msg_1", seq: 1, recalled_by: PEER, recalled_at: "t" } }, hooks);
    expect(thread.messages[0]).toMatchObject({ recalled: true, content: null });
    expect(store.state.conversations.get(`private:${PEER}`)?.lastMessage?.recalled).toBe(true);
  });

  it("my own delivery turns the pending entry into the sent message (no duplicate)", () => {
    const { store, message } = setup();
    const thread = store.thread(`private:${PEER}`);
    thread.loaded = true;
    const pending: MessageItem = { kind: "message", id: "seq-1", msgId: null, seq: null, from: ME, content: "你好", sentAt: "t", recalled: false, status: "pending", seqId: "seq-1" };
    placeMessage(thread, pending);
    message(msg(5, ME, "你好"));
    expect(thread.messages).toHaveLength(1);
    expect(thread.messages[0]).toMatchObject({ id: "seq-1", msgId: "msg_5", seq: 5, seqId: "seq-1" });
  });

  it("a message arriving while the thread's first page loads is kept", () => {
    const { store, message } = setup();
    const thread = store.thread(`private:${PEER}`);
    thread.loading = true;
    message(msg(1));
    expect(thread.messages.map((m) => m.msgId)).toEqual(["msg_1"]);
  });

  it("places messages by seq whatever the arrival order, pending ones last", () => {
    const { store, message } = setup();
    const thread = store.thread(`private:${PEER}`);
    thread.loaded = true;
    placeMessage(thread, { kind: "message", id: "p", msgId: null, seq: null, from: ME, content: "x", sentAt: "t", recalled: false, status: "pending" });
    message(msg(3));
    message(msg(1));
    message(msg(2));
    message(msg(2));
    expect(thread.messages.map((m) => m.seq)).toEqual([1, 2, 3, null]);
  });

  it("conversation.list summaries fill the list and ask a loaded thread to catch up", () => {
    const { store, hooks, calls } = setup();
    store.thread(`private:${PEER}`).loaded = true;
    applySummaries(store, [{ conversation_type: "private", peer_employee_id: PEER, name: "同事", last_seq: 9, last_read_seq: 7, unread_count: 2, last_message: msg(9), last_activity_at: "t" }], hooks);
    expect(store.state.conversations.get(`private:${PEER}`)?.unread).toBe(2);
    expect(calls).toContain(`fill:private:${PEER}`);
  });

  it("group notices become lines in the group's thread, in Chinese", () => {
    const { store, hooks } = setup();
    dispatch(store, { kind: "notification", topic: "", data: { notify_id: "n1", type: "member_joined", title: "入群通知", body: { group_id: "grp_1", group_name: "项目组", inviter_id: PEER, member_ids: [PEER, ME] }, created_at: "t" } }, hooks);
    dispatch(store, { kind: "notification", topic: "", data: { notify_id: "n2", type: "group_renamed", title: "", body: { group_id: "grp_1", group_name: "项目组二期", old_name: "项目组", operator_id: ME }, created_at: "t" } }, hooks);
    const thread = store.thread("group:grp_1");
    expect(thread.notices.map((n) => n.text)).toEqual(["同事邀请你加入了群聊", "你将群名称修改为“项目组二期”"]);
    expect(store.state.conversations.get("group:grp_1")?.name).toBe("项目组二期");
  });

  it("a group closes to me either way, but only a dismissal says the group was dismissed", () => {
    const { store, hooks } = setup();
    dispatch(store, { kind: "notification", topic: "", data: { notify_id: "n1", type: "member_removed", title: "", body: { group_id: "grp_1", group_name: "项目组", operator_id: PEER, member_ids: [ME] }, created_at: "t" } }, hooks);
    const removed = store.state.conversations.get("group:grp_1");
    expect([removed?.dismissed, removed?.groupDismissed]).toEqual([true, undefined]);
    dispatch(store, { kind: "notification", topic: "", data: { notify_id: "n2", type: "group_dismissed", title: "", body: { group_id: "grp_2", group_name: "周会", operator_id: PEER }, created_at: "t" } }, hooks);
    const dismissed = store.state.conversations.get("group:grp_2");
    expect([dismissed?.dismissed, dismissed?.groupDismissed]).toEqual([true, true]);
  });
});
