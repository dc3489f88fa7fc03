// Driven by tests/web/test_node_client.py: the TypeScript client library (built for Node.js into
// web/dist-lib) signs in with a web session's cookies, chats, and reports JSON lines on stdout.
// argv: baseUrl cookieHeader csrfToken peerEmployeeId
import { MChatClient, mqttTransport, webCredentialProvider } from "../../web/dist-lib/mchat-client.js";

const [baseUrl, cookie, csrf, peer] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const client = new MChatClient({
  credentials: webCredentialProvider({ baseUrl, csrfToken: () => csrf, headers: () => ({ Cookie: cookie }) }),
  transport: mqttTransport,
});
const timer = setTimeout(() => {
  say({ error: "timeout" });
  process.exit(2);
}, 30000);
client.on("message", async (e) => {
  if (e.message.from_employee_id !== peer) return;
  say({ received: e.message.content, seq: e.message.seq, conversation: e.conversation });
  const list = await client.conversationList();
  say({ conversations: list.conversations.map((c) => [c.peer_employee_id, c.last_seq, c.unread_count]) });
  await client.close();
  clearTimeout(timer);
  process.exit(0);
});
await client.connect();
const sent = await client.sendPrivate(peer, "来自 Node.js 的问候");
say({ connected: client.clientId, sent });
