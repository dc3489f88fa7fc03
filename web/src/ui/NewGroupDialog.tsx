import { useState } from "preact/hooks";
import { t } from "../i18n";
import { Dialog, useApp, useAppState } from "./common";
import { MemberPicker } from "./MemberPicker";

export function NewGroupDialog({ onClose, onCreated }: { onClose: () => void; onCreated: (key: string) => void }) {
  const app = useApp();
  const state = useAppState();
  const [name, setName] = useState("");
  const [picked, setPicked] = useState<string[]>([]);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const key = await app.createGroup(name.trim(), picked);
      onCreated(key);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={t("new_group")} onClose={onClose} testId="new-group-dialog">
      <form onSubmit={submit} class="stack">
        <label class="field">
          <span>{t("group_name")}</span>
          <input value={name} maxLength={100} placeholder={t("group_name_placeholder")} onInput={(e) => setName((e.target as HTMLInputElement).value)} data-testid="group-name" required />
        </label>
        <MemberPicker exclude={[state.me?.employee_id ?? ""]} picked={picked} onChange={setPicked} />
        {error && <p class="form-error" role="alert">{error}</p>}
        <div class="dialog-actions">
          <button type="button" onClick={onClose}>
            {t("cancel")}
          </button>
          <button type="submit" class="primary" disabled={busy || !name.trim() || picked.length === 0} data-testid="create-group">
            {t("create")}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
