import { useState } from "preact/hooks";
import { MChatError } from "../client";
import { t } from "../i18n";
import { Avatar, Dialog, shortTime, useApp, useAppState } from "./common";
import { MemberPicker } from "./MemberPicker";

function errText(err: unknown): string {
  return err instanceof MChatError || err instanceof Error ? err.message : String(err);
}

export function GroupPanel({ groupId, onClose, onOpenProfile }: { groupId: string; onClose: () => void; onOpenProfile: (id: string) => void }) {
  const app = useApp();
  const state = useAppState();
  const group = state.groups.get(groupId);
  const me = state.me?.employee_id ?? "";
  const [name, setName] = useState("");
  const [renaming, setRenaming] = useState(false);
  const [adding, setAdding] = useState(false);
  const [picked, setPicked] = useState<string[]>([]);
  const [confirmLeave, setConfirmLeave] = useState(false);
  const [challenge, setChallenge] = useState<{ challenge_id: string; token: string; expires_at: string } | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  if (!group) {
    return (
      <aside class="side-panel">
        <p class="muted">{t("loading")}</p>
      </aside>
    );
  }
  const myRole = group.members.find((m) => m.employee_id === me)?.role ?? group.role;
  const manager = myRole === "owner" || myRole === "admin";
  const run = async (fn: () => Promise<void>) => {
    setBusy(true);
    setError("");
    try {
      await fn();
    } catch (err) {
      setError(errText(err));
    } finally {
      setBusy(false);
    }
  };
  const canRemove = (role: string, id: string) =>
    id !== me && role !== "owner" && (myRole === "owner" || (myRole === "admin" && role === "member"));

  return (
    <aside class="side-panel" data-testid="group-panel">
      <div class="side-head">
        <h3>{t("group_settings")}</h3>
        <button type="button" class="icon-button" onClick={onClose} aria-label={t("close")}>
          ×
        </button>
      </div>
      {error && <p class="form-error" role="alert">{error}</p>}
      <section class="side-section">
        <div class="side-label">{t("group_name")}</div>
        {renaming ? (
          <form
            class="inline-form"
            onSubmit={(e) => {
              e.preventDefault();
              void run(async () => {
                await app.renameGroup(groupId, name.trim());
                setRenaming(false);
              });
            }}
          >
            <input value={name} maxLength={100} placeholder={t("rename_placeholder")} onInput={(e) => setName((e.target as HTMLInputElement).value)} data-testid="rename-input" />
            <button type="submit" class="primary" disabled={busy || !name.trim()}>
              {t("save")}
            </button>
            <button type="button" onClick={() => setRenaming(false)}>
              {t("cancel")}
            </button>
          </form>
        ) : (
          <div class="side-value">
            <span>{group.name}</span>
            {manager && (
              <button
                type="button"
                class="link-button"
                onClick={() => {
                  setName(group.name);
                  setRenaming(true);
                }}
                data-testid="rename"
              >
                {t("rename")}
              </button>
            )}
          </div>
        )}
      </section>
      <section class="side-section">
        <div class="side-label">
          {t("members")} · {t("member_count", { n: group.member_count })}
          {manager && (
            <button type="button" class="link-button" onClick={() => setAdding(true)} data-testid="add-members">
              {t("add_members")}
            </button>
          )}
        </div>
        <ul class="member-list" data-testid="member-list">
          {group.members.map((m) => (
            <li key={m.employee_id}>
              <button type="button" class="member" onClick={() => onOpenProfile(m.employee_id)}>
                <Avatar name={m.name} id={m.employee_id} small />
                <span class="member-name">{m.name}</span>
                {m.is_ai_agent && <span class="tag tag-agent">{t("agent_badge")}</span>}
                {m.role !== "member" && <span class={`tag tag-${m.role}`}>{m.role === "owner" ? t("role_owner") : t("role_admin")}</span>}
              </button>
              {canRemove(m.role, m.employee_id) && (
                <button type="button" class="link-button danger" disabled={busy} onClick={() => void run(() => app.removeMember(groupId, m.employee_id))}>
                  {t("remove_member")}
                </button>
              )}
            </li>
          ))}
        </ul>
      </section>
      <section class="side-section side-actions">
        {myRole !== "owner" && (
          <button type="button" class="danger-button" onClick={() => setConfirmLeave(true)} data-testid="leave-group">
            {t("leave_group")}
          </button>
        )}
        {myRole === "owner" && (
          <button
            type="button"
            class="danger-button"
            data-testid="dismiss-group"
            disabled={busy}
            onClick={() =>
              void run(async () => {
                setChallenge(await app.challenge());
              })
            }
          >
            {t("dismiss_group")}
          </button>
        )}
      </section>
      {adding && (
        <Dialog title={t("add_members")} onClose={() => setAdding(false)}>
          <MemberPicker exclude={group.members.map((m) => m.employee_id)} picked={picked} onChange={setPicked} />
          <div class="dialog-actions">
            <button type="button" onClick={() => setAdding(false)}>
              {t("cancel")}
            </button>
            <button
              type="button"
              class="primary"
              disabled={busy || picked.length === 0}
              onClick={() =>
                void run(async () => {
                  await app.addMembers(groupId, picked);
                  setPicked([]);
                  setAdding(false);
                })
              }
            >
              {t("confirm")}
            </button>
          </div>
        </Dialog>
      )}
      {confirmLeave && (
        <Dialog title={t("leave_group")} onClose={() => setConfirmLeave(false)}>
          <p>{t("leave_confirm", { name: group.name })}</p>
          <div class="dialog-actions">
            <button type="button" onClick={() => setConfirmLeave(false)}>
              {t("cancel")}
            </button>
            <button
              type="button"
              class="danger-button"
              onClick={() =>
                void run(async () => {
                  await app.leaveGroup(groupId);
                  setConfirmLeave(false);
                  onClose();
                })
              }
            >
              {t("confirm")}
            </button>
          </div>
        </Dialog>
      )}
      {challenge && (
        <Dialog title={t("dismiss_title")} onClose={() => setChallenge(null)} testId="dismiss-dialog">
          <p>{t("dismiss_confirm", { name: group.name })}</p>
          <p class="muted">{t("dismiss_challenge_expires", { time: shortTime(challenge.expires_at) })}</p>
          {error && <p class="form-error">{error}</p>}
          <div class="dialog-actions">
            <button type="button" onClick={() => setChallenge(null)}>
              {t("cancel")}
            </button>
            <button
              type="button"
              class="danger-button"
              data-testid="dismiss-confirm"
              disabled={busy}
              onClick={() =>
                void run(async () => {
                  await app.dismissGroup(groupId, challenge);
                  setChallenge(null);
                  onClose();
                })
              }
            >
              {t("dismiss_do")}
            </button>
          </div>
        </Dialog>
      )}
    </aside>
  );
}
