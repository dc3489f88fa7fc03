// The page: one MChatClient with the session's short-lived credential, one ChatApp (store +
// dispatcher + actions), the Preact UI.
import { render } from "preact";
import { MChatClient, cookieValue, webCredentialProvider } from "./client";
import { perfMark } from "./client/marks";
import { mqttTransport } from "./client/mqttTransport";
import { ChatApp } from "./state/app";
import { App } from "./ui/App";
import { AppContext } from "./ui/common";
import "./ui/styles.css";

perfMark("script-start");
const client = new MChatClient({
  credentials: webCredentialProvider({ csrfToken: () => cookieValue(document.cookie, "csrftoken") }),
  transport: mqttTransport,
});
const app = new ChatApp(client);

function toLogin(): void {
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/login/?next=${next}`);
}

client.on("connection", (e) => {
  if (e.state === "unauthorized") toLogin();
});
document.addEventListener("visibilitychange", () => app.setVisible(document.visibilityState === "visible"));
window.addEventListener("online", () => client.reconnectNow());
app.setVisible(document.visibilityState === "visible");

// For the browser tests and the bench (read-only use): the app's store and client.
(window as unknown as { mchat: ChatApp }).mchat = app;

// Connect first: the credential request goes out before the first render, not after it.
const started = app.start();

const root = document.getElementById("app");
if (root) {
  render(
    <AppContext.Provider value={app}>
      <App />
    </AppContext.Provider>,
    root,
  );
}

started.catch((err) => {
  console.error("mchat: start failed", err);
});
