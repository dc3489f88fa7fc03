import { useEffect, useState } from "preact/hooks";
import { type ConversationRef, conversationKey, cookieValue } from "../client";
import { t } from "../i18n";
import { ensureConversation } from "../state/dispatch";
import { AgentsView } from "./AgentsView";
import { Avatar, useApp, useAppState } from "./common";
import { IconBot, IconChat, IconPeople, IconSignOut } from "./icons";
import { ConversationList } from "./ConversationList";
import { ConversationView } from "./ConversationView";
import { NewGroupDialog } from "./NewGroupDialog";
import { OrgView, ProfileDialog } from "./OrgView";
import { SessionsButton } from "./SessionsPanel";

type Tab = "chats" | "org" | "agents";

/** The conversation a path names: /c/private/{employee_id} or /c/group/{group_id}. */
export function routeOf(path: string): ConversationRef | null {
  const m = /^\/c\/(private|group)\/([^/]+)\/?$/.exec(path);
  if (!m) return null;
  return { type: m[1] as "private" | "group", id: decodeURIComponent(m[2]) };
}

function pathOf(ref: ConversationRef | null): string {
  return ref ? `/c/${ref.type}/${encodeURIComponent(ref.id)}` : "/";
}

function Banner() {
  const app = useApp();
  const state = useAppState();
  if (state.connection === "connected" || state.connection === "idle" || state.connection === "closed" && !state.connectionError) return null;
  const text =
    state.connection === "connecting"
      ? t("connecting")
      : state.connection === "reconnecting"
        ? t("reconnecting")
        : state.connection === "unauthorized"
          ? t("signed_out")
          : t("connect_failed", { error: state.connectionError });
  return (
    <div class={`banner banner-${state.connection}`} role="status" data-testid="connection-banner" data-state={state.connection}>
      <span>{text}</span>
      {state.connection === "reconnecting" && (
        <button type="button" class="link-button" onClick={() => app.client.reconnectNow()}>
          {t("reconnect_now")}
        </button>
      )}
    </div>
  );
}

function SignOut() {
  const app = useApp();
  const token = cookieValue(document.cookie, "csrftoken") ?? "";
  return (
    <form method="post" action="/logout/" class="sign-out" onSubmit={() => void app.client.close()}>
      <input type="hidden" name="csrfmiddlewaretoken" value={token} />
      <button type="submit" class="rail-button" title={t("sign_out")} aria-label={t("sign_out")} data-testid="sign-out">
        <IconSignOut />
      </button>
    </form>
  );
}

export function App() {
  const app = useApp();
  const state = useAppState();
  const [tab, setTab] = useState<Tab>("chats");
  const [route, setRoute] = useState<ConversationRef | null>(routeOf(location.pathname));
  const [profile, setProfile] = useState<string | null>(null);
  const [newGroup, setNewGroup] = useState(false);

  useEffect(() => {
    const onPop = () => setRoute(routeOf(location.pathname));
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const navigate = (ref: ConversationRef | null) => {
    const path = pathOf(ref);
    if (location.pathname !== path) history.pushState(null, "", path);
    setRoute(ref);
  };

  useEffect(() => {
    if (!state.me) return;
    if (route) void app.open(route);
    else app.close();
  }, [route?.type, route?.id, Boolean(state.me)]);

  // For the web bench: when the list's first page is on screen, and when all of it is.
  useEffect(() => {
    if (state.conversationsLoaded && performance.getEntriesByName("mchat-list-first-page").length === 0) {
      performance.mark("mchat-list-first-page");
    }
    if (state.conversationsComplete && performance.getEntriesByName("mchat-list-interactive").length === 0) {
      performance.mark("mchat-list-interactive");
    }
  }, [state.conversationsLoaded, state.conversationsComplete]);

  const total = app.store.totalUnread();
  useEffect(() => {
    document.title = total > 0 ? `(${total}) ${t("app_name")}` : t("app_name");
  }, [total]);

  const chatWith = (id: string) => {
    setProfile(null);
    setTab("chats");
    const ref: ConversationRef = { type: "private", id };
    ensureConversation(app.store, ref);
    navigate(ref);
  };

  const active = route ? state.conversations.get(conversationKey(route)) : undefined;
  const me = state.me;
  return (
    <div class={`app${route ? " has-conversation" : ""}`} data-connection={state.connection}>
      <Banner />
      <div class="layout">
        <nav class="rail" aria-label="MChat">
          {me && (
            <button type="button" class="rail-me" onClick={() => setProfile(me.employee_id)} title={me.name}>
              <Avatar name={me.name} id={me.employee_id} />
            </button>
          )}
          <button type="button" class={`rail-button${tab === "chats" ? " active" : ""}`} onClick={() => setTab("chats")} data-testid="tab-chats">
            <span class="rail-icon"><IconChat /></span>
            <span class="rail-label">{t("tab_chats")}</span>
            {total > 0 && <span class="rail-badge" data-testid="total-unread">{total > 99 ? "99+" : total}</span>}
          </button>
          <button type="button" class={`rail-button${tab === "org" ? " active" : ""}`} onClick={() => setTab("org")} data-testid="tab-org">
            <span class="rail-icon"><IconPeople /></span>
            <span class="rail-label">{t("tab_org")}</span>
          </button>
          <button type="button" class={`rail-button${tab === "agents" ? " active" : ""}`} onClick={() => setTab("agents")} data-testid="tab-agents">
            <span class="rail-icon"><IconBot /></span>
            <span class="rail-label">{t("tab_agents")}</span>
          </button>
          <span class="rail-spacer" />
          <SessionsButton />
          <SignOut />
        </nav>
        <aside class="sidebar">
          {tab === "chats" && <ConversationList onOpen={(c) => navigate(c.ref)} onNewGroup={() => setNewGroup(true)} />}
          {tab === "org" && <OrgView onPick={setProfile} />}
          {tab === "agents" && <AgentsView onChat={chatWith} />}
        </aside>
        <main class="main">
          {active ? (
            <ConversationView conversation={active} onBack={() => navigate(null)} onOpenProfile={setProfile} />
          ) : (
            <div class="placeholder">
              <div class="placeholder-logo">MChat</div>
              <p>{state.connection === "connecting" ? t("connecting") : t("pick_conversation")}</p>
            </div>
          )}
        </main>
      </div>
      {profile && <ProfileDialog employeeId={profile} onClose={() => setProfile(null)} onChat={chatWith} />}
      {newGroup && (
        <NewGroupDialog
          onClose={() => setNewGroup(false)}
          onCreated={(key) => {
            setNewGroup(false);
            const [type, id] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
            navigate({ type: type as "group", id });
          }}
        />
      )}
      {state.toast && (
        <div class="toast" role="status" data-testid="toast">
          {state.toast}
        </div>
      )}
    </div>
  );
}
