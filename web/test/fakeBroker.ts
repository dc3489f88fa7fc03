// An in-memory broker + server for the client's unit tests: it keeps subscriptions (with the
// `+` wildcard), routes publishes, and answers requests through a handler the test sets.
import type { Credential } from "../src/client/types";
import { ConnectRefused, type Transport, type TransportFactory, type TransportOptions } from "../src/client/transport";

export interface Published {
  clientId: string;
  topic: string;
  payload: string;
  retain: boolean;
}

type Handler = (req: { action: string; fields: Record<string, unknown>; seqId: string; clientId: string; attempt: number }) =>
  | { code: number; message?: string; data?: unknown }
  | undefined;

export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  if (f.length !== t.length) return false;
  return f.every((part, i) => part === "+" || part === t[i]);
}

class FakeConnection implements Transport {
  subs = new Set<string>();
  closed = false;
  private messageHandler: ((topic: string, payload: string) => void) | null = null;
  private closeHandler: ((reason: string) => void) | null = null;

  constructor(
    readonly broker: FakeBroker,
    readonly options: TransportOptions,
  ) {}

  async subscribe(topics: string[]) {
    for (const t of topics) this.subs.add(t);
    this.broker.subscribeLog.push(...topics);
  }
  async unsubscribe(topics: string[]) {
    for (const t of topics) this.subs.delete(t);
  }
  async publish(topic: string, payload: string, options: { qos: 0 | 1; retain?: boolean }) {
    if (this.closed) throw new Error("closed");
    this.broker.route(this, topic, payload, options.retain ?? false);
  }
  async end() {
    this.closed = true;
    this.broker.connections.delete(this);
  }
  onMessage(h: (topic: string, payload: string) => void) {
    this.messageHandler = h;
  }
  onClose(h: (reason: string) => void) {
    this.closeHandler = h;
  }
  receive(topic: string, payload: string) {
    if (!this.closed && [...this.subs].some((s) => topicMatches(s, topic))) {
      queueMicrotask(() => this.messageHandler?.(topic, payload));
    }
  }
  drop(reason = "network") {
    this.closed = true;
    this.broker.connections.delete(this);
    this.closeHandler?.(reason);
  }
}

export class FakeBroker {
  connections = new Set<FakeConnection>();
  published: Published[] = [];
  subscribeLog: string[] = [];
  connectAttempts: TransportOptions[] = [];
  /** Passwords the broker accepts (all when empty). */
  validPasswords = new Set<string>();
  down = false;
  handler: Handler = () => ({ code: 0, data: {} });
  private attempts = new Map<string, number>();

  factory: TransportFactory = async (options) => {
    this.connectAttempts.push(options);
    if (this.down) throw new ConnectRefused("connection refused", false);
    if (this.validPasswords.size && !this.validPasswords.has(options.password)) {
      throw new ConnectRefused("Bad User Name or Password", true);
    }
    const c = new FakeConnection(this, options);
    this.connections.add(c);
    return c;
  };

  route(from: FakeConnection, topic: string, payload: string, retain: boolean) {
    this.published.push({ clientId: from.options.clientId, topic, payload, retain });
    const m = /^mchat\/msg\/req\/([^/]+)\/([^/]+)$/.exec(topic);
    if (m) {
      const [, clientId, seqId] = m;
      const body = JSON.parse(payload) as Record<string, unknown>;
      const key = `${clientId}/${seqId}`;
      const attempt = (this.attempts.get(key) ?? 0) + 1;
      this.attempts.set(key, attempt);
      const { action, ...fields } = body;
      const answer = this.handler({ action: String(action), fields, seqId, clientId, attempt });
      if (answer) {
        this.deliver(
          `mchat/msg/resp/${clientId}/${seqId}`,
          JSON.stringify({ seq_id: seqId, code: answer.code, message: answer.message ?? (answer.code ? "错误" : "ok"), data: answer.data ?? null }),
        );
      }
    }
  }

  deliver(topic: string, payload: unknown) {
    const text = typeof payload === "string" ? payload : JSON.stringify(payload);
    for (const c of this.connections) c.receive(topic, text);
  }

  requests(action?: string): { seqId: string; body: Record<string, unknown> }[] {
    return this.published
      .filter((p) => p.topic.startsWith("mchat/msg/req/"))
      .map((p) => ({ seqId: p.topic.split("/").pop() ?? "", body: JSON.parse(p.payload) as Record<string, unknown> }))
      .filter((r) => action === undefined || r.body.action === action);
  }

  dropAll(reason = "network") {
    for (const c of [...this.connections]) c.drop(reason);
  }
}

export async function waitFor(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A web credential for `employeeId` as /web/api/mqtt-credentials hands it out (valid 10 min). */
export function credentialFor(employeeId: string): Credential {
  return {
    employee: { employee_id: employeeId, name: "我" },
    client_id: `${employeeId}_web-1`,
    username: employeeId,
    password: "t",
    expires_at: new Date(Date.now() + 600_000).toISOString(),
    refresh_in_seconds: 240,
    ws_url: "ws://x",
  };
}
