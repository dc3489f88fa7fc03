// The agents directory's Agent Cards (protocol §13.8) against the fake broker: fetched once
// when a person opens an agent's skills, kept by employee id; a refused card keeps its error.
import { describe, expect, it } from "vitest";
import { MChatClient } from "../src/client/client";
import type { AgentCard } from "../src/client/types";
import { ChatApp } from "../src/state/app";
import { FakeBroker, credentialFor } from "./fakeBroker";

const ME = "emp_me_001";
const AGENT = "ai_sales_001";
const credential = credentialFor(ME);

const card: AgentCard = {
  name: "订单助手",
  description: "查询订单和物流",
  url: `mchat://agents/${AGENT}`,
  version: "20250203100000",
  capabilities: { streaming: true, pushNotifications: false, stateTransitionHistory: false },
  skills: [{ id: "track-parcel", name: "物流跟踪", description: "按订单号查询物流", tags: ["物流"], examples: ["订单 1001 到哪了？"] }],
  mchat: { employee_id: AGENT, owner: { employee_id: "emp_zhangsan_001", name: "张三" }, ack_deadline_seconds: 10, streaming: true },
};

async function setup() {
  const broker = new FakeBroker();
  broker.handler = ({ action, fields }) => {
    if (action === "agent.card") {
      return fields.employee_id === AGENT ? { code: 0, data: card } : { code: 404, message: `AI Agent 不存在：${String(fields.employee_id)}` };
    }
    return { code: 0, data: {} };
  };
  const client = new MChatClient({ credentials: async () => credential, transport: broker.factory, requestTimeoutMs: 300, retries: 0, trackGroups: false });
  await client.connect();
  return { broker, app: new ChatApp(client) };
}

describe("agent cards", () => {
  it("loads an agent's card once, with its skills, descriptions and examples", async () => {
    const { broker, app } = await setup();
    const pending = app.loadAgentCard(AGENT);
    expect(app.store.state.agentCards.get(AGENT)).toEqual({ loading: true });
    await pending;
    const entry = app.store.state.agentCards.get(AGENT);
    expect(entry && "card" in entry && entry.card.skills[0]).toMatchObject({ name: "物流跟踪", description: "按订单号查询物流", examples: ["订单 1001 到哪了？"] });
    await app.loadAgentCard(AGENT); // held: not asked again
    expect(broker.requests("agent.card").map((r) => r.body)).toEqual([{ action: "agent.card", employee_id: AGENT }]);
    await app.loadAgentCard(AGENT, true); // fresh: asked again
    expect(broker.requests("agent.card")).toHaveLength(2);
  });

  it("keeps the error of a card that is refused, and asks again next time", async () => {
    const { broker, app } = await setup();
    await app.loadAgentCard("emp_person_002");
    expect(app.store.state.agentCards.get("emp_person_002")).toEqual({ loading: false, error: "AI Agent 不存在：emp_person_002" });
    await app.loadAgentCard("emp_person_002");
    expect(broker.requests("agent.card")).toHaveLength(2);
  });
});
