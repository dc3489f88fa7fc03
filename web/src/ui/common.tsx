// Small shared pieces: the app context, the store hook, avatars, time, dialogs.
import type { ComponentChildren } from "preact";
import { createContext } from "preact";
import { useContext, useEffect, useReducer } from "preact/hooks";
import type { ChatApp } from "../state/app";
import type { AppState } from "../state/store";
import { t } from "../i18n";

export const AppContext = createContext<ChatApp | null>(null);

export function useApp(): ChatApp {
  const app = useContext(AppContext);
  if (!app) throw new Error("no ChatApp");
  return app;
}

/** The store's state; the component renders again whenever it changes. */
export function useAppState(): AppState {
  const app = useApp();
  const [, force] = useReducer((x: number) => x + 1, 0);
  useEffect(() => app.store.subscribe(() => force(0)), [app]);
  return app.store.state;
}

function hash(text: string): number {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) | 0;
  return Math.abs(h);
}

export function Avatar({ name, id, group, small }: { name: string; id: string; group?: boolean; small?: boolean }) {
  const letter = (name || id || "?").trim().slice(-2);
  const cls = `avatar avatar-c${hash(id) % 8}${group ? " avatar-group" : ""}${small ? " avatar-small" : ""}`;
  return (
    <span class={cls} aria-hidden="true">
      {group ? (name || "群").slice(0, 1) : letter}
    </span>
  );
}

export function PresenceDot({ online }: { online: boolean }) {
  return <span class={online ? "presence presence-on" : "presence presence-off"} title={online ? t("online") : t("offline")} />;
}

export function shortTime(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const now = new Date();
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  if (d.toDateString() === now.toDateString()) return hm;
  return `${d.getMonth() + 1}/${d.getDate()} ${hm}`;
}

export function Dialog({
  title,
  onClose,
  children,
  testId,
}: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  testId?: string;
}) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  return (
    <div class="dialog-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class="dialog" role="dialog" aria-modal="true" aria-label={title} data-testid={testId}>
        <div class="dialog-head">
          <h2>{title}</h2>
          <button type="button" class="icon-button" onClick={onClose} aria-label={t("close")}>
            ×
          </button>
        </div>
        <div class="dialog-body">{children}</div>
      </div>
    </div>
  );
}

export function isOnline(state: AppState, employeeId: string): boolean {
  return state.presence.get(employeeId)?.status === "online";
}
