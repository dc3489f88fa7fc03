// The page's first load against the fake broker: the conversation list comes in small pages
// (each under one WebSockets write of the broker), each shown as it comes, and org.tree is asked
// only after the list; the store renders a lone change at once and a burst once.
import { describe, expect, it } from "vitest";
import { MChatClient } from "../src/client/client";
import type { ConversationSummary } from "../src/client/types";
import { ChatApp, listPageSize } from "../src/state/app";
import { Store } from "../src/state/store";
import { FakeBroker, credentialFor } from "./fakeBroker";

const ME = "emp_me_001";
const credential = credentialFor(ME);

function summary(i: number): ConversationSummary {
  const peer = `emp_peer_${String(i).padStart(3, "0")}`;
  return {
    conversation_type: "private",
    peer_employee_id: peer,
    name: `同事${i}`,
    last_seq: 1,
    last_read_seq: 0,
    unread_count: 1,
    last_message: { msg_id: `msg_${i}`, type: "private", from_employee_id: peer, to_employee_id: ME, content: `第 ${i} 条`, sent_at: "2026-12-02T06:00:00.000Z", seq: 1 },
    last_activity_at: new Date(Date.UTC(2026, 11, 2, 6, 0, 0) - i * 1000).toISOString(),
  } as ConversationSummary;
}

describe("first load", () => {
  it("loads 60 conversations in small pages, shows the first page before the rest, then asks org.tree", async () => {
    const all = Array.from({ length: 60 }, (_, i) => summary(i));
    const broker = new FakeBroker();
    broker.handler = ({ action, fields }) => {
      if (action === "group.list") return { code: 0, data: { groups: [] } };
      if (action === "org.tree") return { code: 0, data: { version: "1", departments: [], employees: [] } };
      if (action === "conversation.list") {
        const from = fields.cursor ? Number(fields.cursor) : 0;
        const page = all.slice(from, from + Number(fields.limit));
        const next = from + page.length < all.length ? String(from + page.length) : null;
        return { code: 0, data: { conversations: page, next_cursor: next } };
      }
      return { code: 0, data: {} };
    };
    const client = new MChatClient({ credentials: async () => credential, transport: broker.factory, requestTimeoutMs: 300, retries: 0 });
    const app = new ChatApp(client);
    const seen: [number, boolean][] = [];
    app.store.subscribe(() => seen.push([app.store.state.conversations.size, app.store.state.conversationsComplete]));
    await app.start();

    const pages = broker.requests("conversation.list").map((r) => r.body.limit as number);
    expect(pages[0]).toBe(15);
    expect(pages.slice(1).every((n) => n === listPageSize(all.slice(0, 15)))).toBe(true);
    expect(pages.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(60);
    expect(app.store.sortedConversations().map((c) => c.name)).toEqual(all.map((s) => s.name));
    // The first page was on screen while the others were still coming.
    expect(seen.some(([n, complete]) => n === 15 && !complete)).toBe(true);
    expect(app.store.state.conversationsComplete).toBe(true);
    // org.tree only after the last page of the list.
    const order = broker.requests().map((r) => r.body.action);
    expect(order.indexOf("org.tree")).toBeGreaterThan(order.lastIndexOf("conversation.list"));
  });

  it("sizes a page to stay under one WebSockets write: small items many to a page, large ones few", () => {
    const small = Array.from({ length: 10 }, (_, i) => ({ i }));
    const large = Array.from({ length: 10 }, () => ({ text: "长".repeat(3000) }));
    expect(listPageSize(small)).toBe(100);
    expect(listPageSize(large)).toBe(5);
    expect(listPageSize([summary(1)])).toBeGreaterThan(10);
    const page = Array.from({ length: listPageSize([summary(1)]) }, (_, i) => summary(i));
    expect(new TextEncoder().encode(JSON.stringify(page)).length).toBeLessThan(7_500);
  });
});

describe("Store.changed", () => {
  it("runs the listeners once for changes made together", async () => {
    const store = new Store();
    let runs = 0;
    store.subscribe(() => (runs += 1));
    store.changed();
    store.changed();
    store.changed();
    await Promise.resolve();
    await Promise.resolve();
    expect(runs).toBe(1);
  });
});
