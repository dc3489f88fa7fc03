import { useEffect, useState } from "preact/hooks";
import { t } from "../i18n";
import { Avatar, PresenceDot, useApp, useAppState } from "./common";

/** An agent's Agent Card (§13.8): skills with their names, descriptions, tags and examples. */
function AgentSkills({ employeeId }: { employeeId: string }) {
  const app = useApp();
  const entry = useAppState().agentCards.get(employeeId);
  if (!entry || entry.loading) return <p class="muted small">{t("loading")}</p>;
  if ("error" in entry) return <p class="form-error">{entry.error}</p>;
  const card = entry.card;
  const deadline = card.mchat.ack_deadline_seconds;
  return (
    <div class="agent-skills" data-testid="agent-skills">
      <div class="chips">
        {card.capabilities?.streaming && <span class="chip">{t("agent_streaming")}</span>}
        {deadline ? <span class="chip">{t("agent_ack_deadline", { seconds: deadline })}</span> : null}
      </div>
      {card.skills.length === 0 && <p class="muted small">{t("agent_skills_empty")}</p>}
      <ul class="skill-list">
        {card.skills.map((skill) => (
          <li key={skill.id} class="skill" data-testid="agent-skill" data-skill={skill.id}>
            <div class="skill-name">{skill.name}</div>
            {skill.description && <p class="skill-desc">{skill.description}</p>}
            {skill.tags && skill.tags.length > 0 && (
              <div class="chips">
                {skill.tags.map((tag) => (
                  <span key={tag} class="chip">{tag}</span>
                ))}
              </div>
            )}
            {skill.examples && skill.examples.length > 0 && (
              <div class="skill-examples">
                <span class="muted small">{t("agent_skill_examples")}</span>
                <ul>
                  {skill.examples.map((example) => (
                    <li key={example} class="skill-example" data-testid="agent-skill-example">
                      {example}
                    </li>
                  ))}
                </ul>
              </div>
            )}
          </li>
        ))}
      </ul>
      {card.mchat.owner && (
        <p class="muted small">
          {t("agent_owner")}：{card.mchat.owner.name || app.store.nameOf(card.mchat.owner.employee_id)}
        </p>
      )}
    </div>
  );
}

export function AgentsView({ onChat }: { onChat: (id: string) => void }) {
  const app = useApp();
  const state = useAppState();
  const [skill, setSkill] = useState("");
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const toggle = (id: string) => {
    const next = new Set(open);
    if (next.has(id)) next.delete(id);
    else {
      next.add(id);
      void app.loadAgentCard(id);
    }
    setOpen(next);
  };
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
            {a.owner_id && !open.has(a.employee_id) && (
              <p class="muted small">
                {t("agent_owner")}：{app.store.nameOf(a.owner_id)}
              </p>
            )}
            {open.has(a.employee_id) && <AgentSkills employeeId={a.employee_id} />}
            <div class="agent-actions">
              <button type="button" class="primary small" onClick={() => onChat(a.employee_id)} data-testid="agent-chat">
                {t("start_chat")}
              </button>
              <button
                type="button"
                class="link-button"
                aria-expanded={open.has(a.employee_id)}
                onClick={() => toggle(a.employee_id)}
                data-testid="agent-skills-toggle"
              >
                {open.has(a.employee_id) ? t("agent_skills_hide") : t("agent_skills_show")}
              </button>
            </div>
          </li>
        ))}
      </ul>
    </div>
  );
}
