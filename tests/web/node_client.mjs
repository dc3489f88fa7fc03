// Driven by tests/web/test_node_client.py: the TypeScript client library (built for Node.js into
// web/dist-lib) signs in with a web session's cookies, chats, streams a reply, and reports JSON
// lines on stdout.
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
  // An agent written in JavaScript streams its answer (protocol §13).
  const stream = await client.streamStart(e.conversation, { replyTo: e.message.msg_id });
  for (const piece of ["流式", "回复，", "来自 Node.js"]) await client.streamAppend(stream.msg_id, piece);
  const ended = await client.streamEnd(stream.msg_id);
  say({ streamed: stream.msg_id, seq: stream.seq, length: ended.length });
  await client.close();
  clearTimeout(timer);
  process.exit(0);
});
await client.connect();
const sent = await client.sendPrivate(peer, "来自 Node.js 的问候");
say({ connected: client.clientId, sent });
