import { useEffect, useState } from "preact/hooks";
import type { Department, Employee } from "../client";
import { t } from "../i18n";
import { Avatar, Dialog, PresenceDot, isOnline, shortTime, useApp, useAppState } from "./common";

function DepartmentNode({ dept, children, people, depth, onPick }: {
  dept: Department;
  children: Map<string | null, Department[]>;
  people: Map<string | null, Employee[]>;
  depth: number;
  onPick: (id: string) => void;
}) {
  const state = useAppState();
  const [open, setOpen] = useState(depth < 1);
  const subs = children.get(dept.department_id) ?? [];
  const members = people.get(dept.department_id) ?? [];
  return (
    <li class={`dept depth-${Math.min(depth, 5)}`}>
      <button type="button" class="dept-head" onClick={() => setOpen(!open)} aria-expanded={open}>
        <span class="caret">{open ? "▾" : "▸"}</span> {dept.name} <span class="muted small">{members.length || ""}</span>
      </button>
      {open && (
        <ul>
          {members.map((e) => (
            <li key={e.employee_id}>
              <button type="button" class="person" onClick={() => onPick(e.employee_id)} data-testid="person">
                <span class="avatar-wrap">
                  <Avatar name={e.name} id={e.employee_id} small />
                  <PresenceDot online={isOnline(state, e.employee_id)} />
                </span>
                <span>{e.name}</span>
                {e.is_ai_agent && <span class="tag tag-agent">{t("agent_badge")}</span>}
              </button>
            </li>
          ))}
          {subs.map((d) => (
            <DepartmentNode key={d.department_id} dept={d} children={children} people={people} depth={depth + 1} onPick={onPick} />
          ))}
        </ul>
      )}
    </li>
  );
}

export function OrgView({ onPick }: { onPick: (id: string) => void }) {
  const app = useApp();
  const state = useAppState();
  useEffect(() => {
    void app.loadOrg().catch(() => {});
  }, []);
  const children = new Map<string | null, Department[]>();
  for (const d of state.departments) {
    const list = children.get(d.parent_id) ?? [];
    list.push(d);
    children.set(d.parent_id, list);
  }
  const known = new Set(state.departments.map((d) => d.department_id));
  const people = new Map<string | null, Employee[]>();
  for (const e of state.employees.values()) {
    const dept = e.department_id && known.has(e.department_id) ? e.department_id : null;
    const list = people.get(dept) ?? [];
    list.push(e);
    people.set(dept, list);
  }
  const roots = children.get(null) ?? [];
  const loose = people.get(null) ?? [];
  return (
    <div class="sidebar-panel">
      <div class="sidebar-head">
        <h2 class="sidebar-title">{t("org_title")}</h2>
      </div>
      <ul class="org-tree" data-testid="org-tree">
        {roots.map((d) => (
          <DepartmentNode key={d.department_id} dept={d} children={children} people={people} depth={0} onPick={onPick} />
        ))}
        {loose.map((e) => (
          <li key={e.employee_id}>
            <button type="button" class="person" onClick={() => onPick(e.employee_id)} data-testid="person">
              <span class="avatar-wrap">
                <Avatar name={e.name} id={e.employee_id} small />
                <PresenceDot online={isOnline(state, e.employee_id)} />
              </span>
              <span>{e.name}</span>
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

export function ProfileDialog({ employeeId, onClose, onChat }: { employeeId: string; onClose: () => void; onChat: (id: string) => void }) {
  const app = useApp();
  const state = useAppState();
  const e = state.employees.get(employeeId);
  const p = state.presence.get(employeeId);
  const dept = state.departments.find((d) => d.department_id === e?.department_id);
  const name = e?.name ?? employeeId;
  const online = p?.status === "online";
  return (
    <Dialog title={name} onClose={onClose} testId="profile">
      <div class="profile">
        <Avatar name={name} id={employeeId} />
        <div class="profile-main">
          <div class="profile-name">
            {name} {e?.is_ai_agent && <span class="tag tag-agent">{t("agent_badge")}</span>}
          </div>
          <div class="profile-presence">
            <PresenceDot online={online} /> {online ? t("online") : p?.last_seen || p?.updated_at ? t("last_seen", { time: shortTime(p.last_seen ?? p.updated_at) }) : t("offline")}
          </div>
          <dl class="profile-fields">
            <dt>{t("profile_id")}</dt>
            <dd>{employeeId}</dd>
            {dept && (
              <>
                <dt>{t("profile_department")}</dt>
                <dd>{dept.name}</dd>
              </>
            )}
          </dl>
        </div>
      </div>
      <div class="dialog-actions">
        {employeeId !== app.me && (
          <button type="button" class="primary" onClick={() => onChat(employeeId)} data-testid="start-chat">
            {t("start_chat")}
          </button>
        )}
      </div>
    </Dialog>
  );
}
