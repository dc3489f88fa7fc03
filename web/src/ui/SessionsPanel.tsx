// "登录设备": the employee's web sign-ins (each browser signed in), ending any of them.
// Sign-in business, so plain HTTP like the credential: GET /api/web/sessions and
// POST /api/web/sessions/{id}/end (session cookie + X-CSRFToken); docs/protocol.md §11.
import { useEffect, useState } from "preact/hooks";
import { cookieValue } from "../client";
import { t } from "../i18n";
import { Dialog, shortTime } from "./common";
import "./sessions.css";

export interface WebSignIn {
  id: string;
  current: boolean;
  device: string;
  user_agent: string;
  address: string;
  method: "password" | "sso";
  started_at: string;
  last_seen_at: string;
}

async function sessionsCall(path: string, method: "GET" | "POST"): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = cookieValue(document.cookie, "csrftoken");
  if (method === "POST" && token) headers["X-CSRFToken"] = token;
  const response = await fetch(path, { method, credentials: "same-origin", headers });
  if (response.status === 401) {
    location.assign("/login/");
    throw new Error(t("signed_out"));
  }
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const body = (await response.json()) as { message?: string };
      if (body.message) message = body.message;
    } catch {
      /* not JSON */
    }
    throw new Error(message);
  }
  return response;
}

const DevicesIcon = () => (
  <svg class="icon" width={20} height={20} viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">
    <rect x="3" y="4" width="13" height="10" rx="1.5" />
    <path d="M7 18h5M9.5 14v4" />
    <rect x="17" y="9" width="5" height="11" rx="1" />
  </svg>
);

export function SessionsPanel({ onClose }: { onClose: () => void }) {
  const [rows, setRows] = useState<WebSignIn[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  const load = async () => {
    try {
      const response = await sessionsCall("/api/web/sessions", "GET");
      setRows(((await response.json()) as { sessions: WebSignIn[] }).sessions);
      setError(null);
    } catch (err) {
      setError(t("devices_failed", { error: (err as Error).message }));
    }
  };
  useEffect(() => void load(), []);

  const end = async (row: WebSignIn) => {
    setBusy(row.id);
    try {
      const response = await sessionsCall(`/api/web/sessions/${encodeURIComponent(row.id)}/end`, "POST");
      const body = (await response.json()) as { signed_out: boolean };
      if (body.signed_out) {
        location.assign("/login/");
        return;
      }
      await load();
    } catch (err) {
      setError(t("devices_failed", { error: (err as Error).message }));
    } finally {
      setBusy(null);
    }
  };

  return (
    <Dialog title={t("devices_title")} onClose={onClose} testId="devices">
      <p class="muted small">{t("devices_hint")}</p>
      {error && (
        <p class="devices-error" role="alert">
          {error}
        </p>
      )}
      {rows === null && !error && <p class="muted">{t("loading")}</p>}
      {rows && (
        <ul class="devices" data-testid="devices-list">
          {rows.map((row) => (
            <li class="device" key={row.id} data-testid="device" data-current={row.current ? "true" : "false"}>
              <div class="device-main">
                <div class="device-name" title={row.user_agent}>
                  <span class="device-label">{row.device || t("device_unknown")}</span>
                  {row.current && <span class="tag tag-admin">{t("device_current")}</span>}
                  {row.method === "sso" && <span class="tag tag-owner">{t("device_method_sso")}</span>}
                </div>
                <div class="muted small">
                  {[
                    row.address ? t("device_address", { address: row.address }) : "",
                    t("device_started", { time: shortTime(row.started_at) }),
                    t("device_last_seen", { time: shortTime(row.last_seen_at) }),
                  ]
                    .filter(Boolean)
                    .join(" · ")}
                </div>
              </div>
              <button type="button" class="device-end" disabled={busy !== null} onClick={() => void end(row)} data-testid="device-end">
                {row.current ? t("device_end_current") : t("device_end")}
              </button>
            </li>
          ))}
        </ul>
      )}
    </Dialog>
  );
}

/** The rail's "登录设备" button and its panel (App wires this in beside sign-out). */
export function SessionsButton() {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button type="button" class="rail-button" onClick={() => setOpen(true)} data-testid="tab-devices" title={t("devices_title")}>
        <span class="rail-icon">
          <DevicesIcon />
        </span>
        <span class="rail-label">{t("devices_short")}</span>
      </button>
      {open && <SessionsPanel onClose={() => setOpen(false)} />}
    </>
  );
}
