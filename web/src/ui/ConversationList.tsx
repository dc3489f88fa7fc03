import { useState } from "preact/hooks";
import { contentSummary } from "../client";
import { t } from "../i18n";
import type { Conversation } from "../state/store";
import { typingText } from "./Activity";
import { Avatar, PresenceDot, isOnline, shortTime, useApp, useAppState } from "./common";
import { IconPlus } from "./icons";

export function lastMessageText(me: string, c: Conversation, nameOf: (id: string) => string): string {
  const m = c.lastMessage;
  if (!m) return "";
  if (m.recalled || m.content === null) {
    if (m.from_employee_id === me) return t("you_recalled");
    return c.ref.type === "private" ? t("peer_recalled") : t("someone_recalled", { name: nameOf(m.from_employee_id) });
  }
  const text = contentSummary(m.content, { image: t("image"), file: t("file") }) || (m.streaming ? t("streaming") : "");
  if (c.ref.type === "group" && m.from_employee_id !== me) return `${nameOf(m.from_employee_id)}：${text}`;
  return text;
}

export function ConversationList({ onOpen, onNewGroup }: { onOpen: (c: Conversation) => void; onNewGroup: () => void }) {
  const app = useApp();
  const state = useAppState();
  const [filter, setFilter] = useState("");
  const list = app.store
    .sortedConversations()
    .filter((c) => !filter || c.name.toLowerCase().includes(filter.toLowerCase()));
  const me = state.me?.employee_id ?? "";
  return (
    <div class="sidebar-panel">
      <div class="sidebar-head">
        <input
          class="search"
          type="search"
          placeholder={t("search_placeholder")}
          value={filter}
          onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
        />
        <button type="button" class="icon-button new-group" title={t("new_group")} aria-label={t("new_group")} onClick={onNewGroup} data-testid="new-group">
          <IconPlus />
        </button>
      </div>
      <ul class="conversation-list" data-testid="conversation-list">
        {!state.conversationsLoaded && <li class="empty">{t("loading")}</li>}
        {state.conversationsLoaded && list.length === 0 && <li class="empty">{t("no_conversations")}</li>}
        {list.map((c) => {
          const typing = typingText(app.store, c, app.store.typingIn(c.key));
          return (
            <li key={c.key}>
              <button
                type="button"
                class={`conversation${c.key === state.activeKey ? " active" : ""}${c.dismissed ? " dismissed" : ""}`}
                onClick={() => onOpen(c)}
                data-testid="conversation"
                data-key={c.key}
              >
                <span class="avatar-wrap">
                  <Avatar name={c.name} id={c.ref.id} group={c.ref.type === "group"} />
                  {c.ref.type === "private" && <PresenceDot online={isOnline(state, c.ref.id)} />}
                </span>
                <span class="conversation-main">
                  <span class="conversation-top">
                    <span class="conversation-name">{c.name}</span>
                    <span class="conversation-time">{shortTime(c.lastMessage?.sent_at ?? c.lastActivityAt)}</span>
                  </span>
                  <span class="conversation-bottom">
                    {typing ? (
                      <span class="conversation-last typing" data-testid="list-typing">
                        {typing}
                      </span>
                    ) : (
                      <span class="conversation-last">{lastMessageText(me, c, (id) => app.store.nameOf(id))}</span>
                    )}
                    {c.unread > 0 && (
                      <span class="badge" data-testid="unread">
                        {c.unread > 99 ? "99+" : c.unread}
                      </span>
                    )}
                  </span>
                </span>
              </button>
            </li>
          );
        })}
      </ul>
    </div>
  );
}
