import { useEffect, useState } from "preact/hooks";
import { t } from "../i18n";
import { Avatar, PresenceDot, useApp, useAppState } from "./common";

export function AgentsView({ onChat }: { onChat: (id: string) => void }) {
  const app = useApp();
  const state = useAppState();
  const [skill, setSkill] = useState("");
  useEffect(() => {
    void app.loadAgents();
  }, []);
  return (
    <div class="sidebar-panel">
      <div class="sidebar-head">
        <form
          class="grow"
          onSubmit={(e) => {
            e.preventDefault();
            void app.loadAgents(skill.trim());
          }}
        >
          <input class="search" type="search" placeholder={t("search_skill")} value={skill} onInput={(e) => setSkill((e.target as HTMLInputElement).value)} />
        </form>
      </div>
      {state.agentsError && <p class="form-error">{state.agentsError}</p>}
      <ul class="agent-list" data-testid="agent-list">
        {state.agents === null && <li class="empty">{t("loading")}</li>}
        {state.agents?.length === 0 && <li class="empty">{t("agents_empty")}</li>}
        {state.agents?.map((a) => (
          <li key={a.employee_id} class="agent-card">
            <div class="agent-top">
              <span class="avatar-wrap">
                <Avatar name={a.name} id={a.employee_id} />
                <PresenceDot online={Boolean(a.online)} />
              </span>
              <span class="agent-name">{a.name}</span>
              <span class="tag tag-agent">{t("agent_badge")}</span>
            </div>
            {a.description && <p class="agent-desc">{a.description}</p>}
            <div class="chips">
              {a.capabilities.map((c) => (
                <span key={c} class="chip">{c}</span>
              ))}
              {a.skills_badge.map((b) => (
                <span key={b} class="chip chip-badge">{b}</span>
              ))}
            </div>
            {a.owner_id && (
              <p class="muted small">
                {t("agent_owner")}：{app.store.nameOf(a.owner_id)}
              </p>
            )}
            <button type="button" class="primary small" onClick={() => onChat(a.employee_id)} data-testid="agent-chat">
              {t("start_chat")}
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
