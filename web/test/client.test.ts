import { describe, expect, it } from "vitest";
import { MChatClient, type ClientEvent } from "../src/client/client";
import { CredentialError } from "../src/client/credential";
import { Forbidden, RequestTimeout, Timeout } from "../src/client/errors";
import type { Credential, MessagePayload } from "../src/client/types";
import { FakeBroker, waitFor } from "./fakeBroker";

const ME = "emp_zhangsan_001";
const PEER = "emp_lisi_002";

function credential(n: number): Credential {
  return {
    employee: { employee_id: ME, name: "张三" },
    client_id: `${ME}_web-abc123`,
    username: ME,
    password: `token-${n}`,
    expires_at: new Date(Date.now() + 600_000).toISOString(),
    refresh_in_seconds: 240,
    ws_url: "ws://127.0.0.1:1/",
    protocol_version: 5,
  };
}

function setup(options: Partial<ConstructorParameters<typeof MChatClient>[0]> = {}) {
  const broker = new FakeBroker();
  let issued = 0;
  const credentialCalls: (Credential | undefined)[] = [];
  let signedOut = false;
  broker.handler = ({ action }) => {
    if (action === "group.list") return { code: 0, data: { groups: [] } };
    if (action === "conversation.list") return { code: 0, data: { conversations: [], next_cursor: null } };
    return { code: 0, data: {} };
  };
  const client = new MChatClient({
    credentials: async (previous) => {
      credentialCalls.push(previous);
      if (signedOut) throw new CredentialError(401, "未登录");
      issued += 1;
      return credential(issued);
    },
    transport: broker.factory,
    requestTimeoutMs: 200,
    retries: 0,
    backoffInitialMs: 10,
    backoffMaxMs: 40,
    gapWaitMs: 30,
    random: () => 0.5,
    ...options,
  });
  const events: ClientEvent[] = [];
  client.on("*", (e) => events.push(e));
  const messages = () =>
    events.filter((e): e is Extract<ClientEvent, { kind: "message" }> => e.kind === "message");
  return {
    broker,
    client,
    events,
    messages,
    credentialCalls,
    signOut: () => {
      signedOut = true;
    },
  };
}

function msg(seq: number, from = PEER, to = ME): MessagePayload {
  return {
    msg_id: `msg_${seq}`,
    type: "private",
    from_employee_id: from,
    to_employee_id: to,
    content: `第 ${seq} 条`,
    sent_at: "2026-12-02T06:00:00.000Z",
    seq,
  };
}

describe("connect", () => {
  it("subscribes to its responses, inbox, presence, profiles, system and its groups, and announces online", async () => {
    const { broker, client } = setup();
    broker.handler = ({ action }) =>
      action === "group.list"
        ? { code: 0, data: { groups: [{ group_id: "grp_1", name: "项目组", owner_id: ME, role: "owner", member_count: 2 }] } }
        : { code: 0, data: {} };
    await client.connect();
    expect(client.state).toBe("connected");
    expect(broker.connectAttempts[0]).toMatchObject({
      clientId: `${ME}_web-abc123`,
      username: ME,
      password: "token-1",
      protocolVersion: 5,
    });
    expect(broker.connectAttempts[0].will).toMatchObject({ topic: `mchat/status/${ME}`, retain: true });
    expect(broker.subscribeLog).toEqual(
      expect.arrayContaining([
        `mchat/msg/resp/${ME}_web-abc123/+`,
        `mchat/inbox/${ME}`,
        "mchat/status/+",
        "mchat/profile/+",
        "mchat/system/notify",
      ]),
    );
    await waitFor(() => broker.subscribeLog.includes("mchat/group/grp_1"));
    const online = broker.published.find((p) => p.topic === `mchat/status/${ME}`);
    expect(online?.retain).toBe(true);
    expect(JSON.parse(online?.payload ?? "{}")).toMatchObject({ status: "online", client_id: `${ME}_web-abc123` });
  });

  it("rejects and stays closed when the credential endpoint says the session ended", async () => {
    const { client, signOut } = setup();
    signOut();
    await expect(client.connect()).rejects.toBeInstanceOf(CredentialError);
    expect(client.state).toBe("unauthorized");
  });
});

describe("requests", () => {
  it("correlates responses by seq_id and returns data", async () => {
    const { broker, client } = setup();
    await client.connect();
    broker.handler = ({ action, fields }) =>
      action === "msg.send_private"
        ? { code: 0, data: { msg_id: "msg_x", to_employee_id: fields.to_employee_id, seq: 7, sent_at: "t" } }
        : { code: 0, data: {} };
    const sent = await client.sendPrivate(PEER, "你好");
    expect(sent).toMatchObject({ msg_id: "msg_x", seq: 7 });
    const [req] = broker.requests("msg.send_private");
    expect(req.body).toEqual({ action: "msg.send_private", to_employee_id: PEER, content: "你好" });
  });

  it("raises the typed error of the code", async () => {
    const { broker, client } = setup();
    await client.connect();
    broker.handler = () => ({ code: 403, message: "无权限执行该操作" });
    const err = await client.groupInfo("grp_x").catch((e) => e);
    expect(err).toBeInstanceOf(Forbidden);
    expect(err.message).toBe("无权限执行该操作");
    expect(err.code).toBe(403);
  });

  it("504 from an agent is a Timeout error with the server's text", async () => {
    const { broker, client } = setup();
    await client.connect();
    broker.handler = () => ({ code: 504, message: "Agent 响应超时" });
    const err = await client.sendPrivate("ai_sales_001", "在吗").catch((e) => e);
    expect(err).toBeInstanceOf(Timeout);
    expect(err.message).toBe("Agent 响应超时");
  });

  it("retries a lost answer with the same seq_id", async () => {
    const { broker, client } = setup();
    await client.connect();
    broker.handler = ({ attempt }) => (attempt === 1 ? undefined : { code: 0, data: { ok: 1 } });
    const data = await client.request("auth.challenge", {}, { timeoutMs: 50, retries: 2, seqId: "my-seq-1" });
    expect(data).toEqual({ ok: 1 });
    const reqs = broker.requests("auth.challenge");
    expect(reqs.map((r) => r.seqId)).toEqual(["my-seq-1", "my-seq-1"]);
  });

  it("gives up with RequestTimeout after its retries", async () => {
    const { broker, client } = setup();
    await client.connect();
    broker.handler = () => undefined;
    const err = await client.request("org.tree", {}, { timeoutMs: 20, retries: 1 }).catch((e) => e);
    expect(err).toBeInstanceOf(RequestTimeout);
    expect(broker.requests("org.tree")).toHaveLength(2);
  });

  it("a request waiting through a reconnect is sent again with its seq_id", async () => {
    const { broker, client } = setup();
    await client.connect();
    broker.handler = ({ action }) => {
      if (action === "msg.send_private") return undefined; // lost with the connection
      if (action === "group.list") return { code: 0, data: { groups: [] } };
      if (action === "conversation.list") return { code: 0, data: { conversations: [], next_cursor: null } };
      return { code: 0, data: {} };
    };
    const sending = client.sendPrivate(PEER, "在吗", { timeoutMs: 2000, seqId: "send-1" });
    await waitFor(() => broker.requests("msg.send_private").length === 1);
    broker.handler = ({ action, seqId }) =>
      action === "msg.send_private"
        ? { code: 0, data: { msg_id: "msg_1", seq: 1, sent_at: "t", seq_id: seqId } }
        : action === "conversation.list"
          ? { code: 0, data: { conversations: [], next_cursor: null } }
          : { code: 0, data: { groups: [] } };
    broker.dropAll();
    expect(await sending).toMatchObject({ msg_id: "msg_1" });
    expect(broker.requests("msg.send_private").map((r) => r.seqId)).toEqual(["send-1", "send-1"]);
  });
});

describe("deliveries in seq order", () => {
  it("hands out messages once, in seq order, waiting briefly for out-of-order ones", async () => {
    const { broker, client, messages } = setup();
    await client.connect();
    broker.deliver(`mchat/inbox/${ME}`, msg(1));
    broker.deliver(`mchat/inbox/${ME}`, msg(3));
    broker.deliver(`mchat/inbox/${ME}`, msg(2));
    broker.deliver(`mchat/inbox/${ME}`, msg(2));
    await waitFor(() => messages().length === 3);
    expect(messages().map((m) => m.message.seq)).toEqual([1, 2, 3]);
    expect(messages().every((m) => m.conversation.type === "private" && m.conversation.id === PEER)).toBe(true);
    expect(broker.requests("msg.history")).toHaveLength(0);
  });

  it("fills a gap with msg.history after_seq", async () => {
    const { broker, client, messages } = setup();
    await client.connect();
    broker.handler = ({ action, fields }) => {
      if (action === "msg.history") {
        const after = Number(fields.after_seq);
        const before = Number(fields.before_seq);
        const list = [2, 3].filter((s) => s > after && s < before).map((s) => msg(s));
        return { code: 0, data: { messages: list, has_more: false, last_seq: 4, last_read_seq: 0 } };
      }
      return { code: 0, data: {} };
    };
    broker.deliver(`mchat/inbox/${ME}`, msg(1));
    broker.deliver(`mchat/inbox/${ME}`, msg(4));
    await waitFor(() => messages().length === 4);
    expect(messages().map((m) => [m.message.seq, m.recovered])).toEqual([
      [1, false],
      [2, true],
      [3, true],
      [4, false],
    ]);
    const [h] = broker.requests("msg.history");
    expect(h.body).toMatchObject({ conversation_type: "private", peer_employee_id: PEER, after_seq: 1, before_seq: 4 });
  });

  it("my own message from another device belongs to the conversation with its recipient", async () => {
    const { broker, client, messages } = setup();
    await client.connect();
    broker.deliver(`mchat/inbox/${ME}`, msg(1, ME, PEER));
    await waitFor(() => messages().length === 1);
    expect(messages()[0].conversation).toEqual({ type: "private", id: PEER });
  });

  it("does not hand out again what the caller loaded (noteSeq)", async () => {
    const { broker, client, messages } = setup();
    await client.connect();
    client.noteSeq({ type: "private", id: PEER }, 5);
    broker.deliver(`mchat/inbox/${ME}`, msg(5));
    broker.deliver(`mchat/inbox/${ME}`, msg(6));
    await waitFor(() => messages().length === 1);
    expect(messages()[0].message.seq).toBe(6);
  });
});

describe("reconnect", () => {
  it("reconnects with back-off and a fresh credential, resubscribes and catches up without duplicates", async () => {
    const { broker, client, messages, events, credentialCalls } = setup();
    await client.connect();
    broker.deliver(`mchat/inbox/${ME}`, msg(1));
    broker.deliver(`mchat/inbox/${ME}`, msg(2));
    await waitFor(() => messages().length === 2);
    broker.handler = ({ action, fields }) => {
      if (action === "group.list") return { code: 0, data: { groups: [] } };
      if (action === "conversation.list") {
        return {
          code: 0,
          data: {
            conversations: [
              { conversation_type: "private", peer_employee_id: PEER, name: "李四", last_seq: 4, last_read_seq: 2, unread_count: 2, last_message: msg(4), last_activity_at: "t" },
            ],
            next_cursor: null,
          },
        };
      }
      if (action === "msg.history") {
        const after = Number(fields.after_seq);
        return { code: 0, data: { messages: [2, 3, 4].filter((s) => s > after).map((s) => msg(s)), has_more: false, last_seq: 4, last_read_seq: 2 } };
      }
      return { code: 0, data: {} };
    };
    broker.down = true;
    broker.dropAll();
    await waitFor(() => client.state === "reconnecting");
    await waitFor(() => broker.connectAttempts.length >= 3);
    broker.down = false;
    await waitFor(() => events.some((e) => e.kind === "resync"));
    expect(client.state).toBe("connected");
    expect(messages().map((m) => m.message.seq)).toEqual([1, 2, 3, 4]);
    // Every attempt asked for a fresh credential, naming the previous one (to keep the device).
    expect(credentialCalls.length).toBe(broker.connectAttempts.length);
    expect(credentialCalls[1]?.client_id).toBe(`${ME}_web-abc123`);
    expect(broker.connectAttempts.at(-1)?.password).not.toBe("token-1");
    expect(broker.subscribeLog.filter((t) => t === `mchat/inbox/${ME}`).length).toBe(2);
    const states = events.filter((e) => e.kind === "connection").map((e) => (e as { state: string }).state);
    expect(states).toContain("reconnecting");
    // The same messages arriving late again (a redelivery) are not handed out twice.
    broker.deliver(`mchat/inbox/${ME}`, msg(4));
    broker.deliver(`mchat/inbox/${ME}`, msg(5));
    await waitFor(() => messages().length === 5);
    expect(messages().map((m) => m.message.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it("stops when the session ended (signed out elsewhere): no reconnect with an old credential", async () => {
    const { broker, client, signOut } = setup();
    await client.connect();
    signOut();
    broker.dropAll("kicked");
    await waitFor(() => client.state === "unauthorized");
    const attempts = broker.connectAttempts.length;
    expect(attempts).toBe(1);
    const err = await client.orgTree().catch((e) => e);
    expect(err.name).toBe("ConnectionClosed");
  });

  it("close() announces offline and fails waiting requests", async () => {
    const { broker, client } = setup();
    await client.connect();
    broker.handler = () => undefined;
    const waiting = client.request("org.tree", {}, { timeoutMs: 5000 }).catch((e) => e);
    await client.close();
    expect((await waiting).name).toBe("ConnectionClosed");
    const last = broker.published.filter((p) => p.topic === `mchat/status/${ME}`).at(-1);
    expect(JSON.parse(last?.payload ?? "{}").status).toBe("offline");
    expect(client.state).toBe("closed");
  });
});

describe("groups", () => {
  it("follows membership notifications", async () => {
    const { broker, client, events } = setup();
    await client.connect();
    broker.deliver(`mchat/inbox/${ME}`, {
      notify_id: "notify_1",
      type: "member_joined",
      title: "入群通知",
      body: { group_id: "grp_9", group_name: "新群", inviter_id: PEER, member_ids: [ME, PEER] },
      created_at: "t",
    });
    await waitFor(() => broker.subscribeLog.includes("mchat/group/grp_9"));
    expect(client.groups.has("grp_9")).toBe(true);
    broker.deliver("mchat/group/grp_9", { msg_id: "m", group_id: "grp_9", from_employee_id: PEER, content: "hi", sent_at: "t", type: "group", seq: 1 });
    await waitFor(() => events.some((e) => e.kind === "message"));
    broker.deliver(`mchat/inbox/${ME}`, {
      notify_id: "notify_2",
      type: "group_dismissed",
      title: "群组解散通知",
      body: { group_id: "grp_9", group_name: "新群", operator_id: PEER },
      created_at: "t",
    });
    await waitFor(() => !client.groups.has("grp_9"));
  });

  it("dismiss sends the challenge it was given", async () => {
    const { broker, client } = setup();
    await client.connect();
    broker.handler = ({ action }) =>
      action === "auth.challenge"
        ? { code: 0, data: { challenge_id: "ch_1", token: "tok", expires_at: "t" } }
        : { code: 0, data: { group_id: "grp_1", dismissed_at: "t" } };
    const ch = await client.challenge();
    await client.groupDismiss("grp_1", ch);
    expect(broker.requests("group.dismiss")[0].body).toMatchObject({ group_id: "grp_1", challenge_id: "ch_1", token: "tok" });
  });
});
