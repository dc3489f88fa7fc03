import { useState } from "preact/hooks";
import { t } from "../i18n";
import { Avatar, useAppState } from "./common";

/** Pick employees from the organisation (org.tree), searchable by name or id. */
export function MemberPicker({ exclude, picked, onChange }: { exclude: string[]; picked: string[]; onChange: (ids: string[]) => void }) {
  const state = useAppState();
  const [q, setQ] = useState("");
  const skip = new Set(exclude);
  const people = [...state.employees.values()]
    .filter((e) => !skip.has(e.employee_id))
    .filter((e) => !q || e.name.includes(q) || e.employee_id.includes(q))
    .sort((a, b) => a.name.localeCompare(b.name, "zh-CN"))
    .slice(0, 200);
  const toggle = (id: string) => onChange(picked.includes(id) ? picked.filter((x) => x !== id) : [...picked, id]);
  return (
    <div class="picker">
      <input class="search" type="search" placeholder={t("choose_members")} value={q} onInput={(e) => setQ((e.target as HTMLInputElement).value)} data-testid="picker-search" />
      <ul class="picker-list">
        {people.map((e) => (
          <li key={e.employee_id}>
            <label class="picker-row">
              <input type="checkbox" checked={picked.includes(e.employee_id)} onChange={() => toggle(e.employee_id)} data-testid={`pick-${e.employee_id}`} />
              <Avatar name={e.name} id={e.employee_id} small />
              <span>{e.name}</span>
              {e.is_ai_agent && <span class="tag tag-agent">{t("agent_badge")}</span>}
              <span class="muted small">{e.employee_id}</span>
            </label>
          </li>
        ))}
      </ul>
    </div>
  );
}
