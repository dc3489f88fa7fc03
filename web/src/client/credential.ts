// The short-lived MQTT credential of a signed-in web session (WEB-CONTRACT.md):
// POST /api/web/mqtt-credential with the session cookie and X-CSRFToken.
import type { Credential } from "./types";

/** The credential endpoint refused: the session ended (401) or is not allowed (403). */
export class CredentialError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "CredentialError";
  }
  /** True when signing in again is the only way on (401/403). */
  get signedOut(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/** The value of cookie `name` in a `document.cookie`-style string. */
export function cookieValue(cookies: string, name: string): string | null {
  for (const part of cookies.split(";")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return null;
}

export interface WebCredentialOptions {
  /** Where Django runs; "" (the default) means the page's own origin. */
  baseUrl?: string;
  /** The CSRF token (in a browser: cookieValue(document.cookie, "csrftoken")). */
  csrfToken: () => string | null;
  /** Extra headers, e.g. {Cookie: "sessionid=...; csrftoken=..."} from Node.js. */
  headers?: () => Record<string, string>;
  fetch?: typeof fetch;
}

/** A credential provider: each call POSTs for a fresh credential, keeping the previous device. */
export function webCredentialProvider(options: WebCredentialOptions): (previous?: Credential) => Promise<Credential> {
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  return async (previous?: Credential) => {
    const body: Record<string, string> = {};
    if (previous) {
      const device = previous.client_id.slice(previous.employee.employee_id.length + 1);
      if (device) body.device = device;
    }
    const headers: Record<string, string> = {
      "Content-Type": "application/json",
      Accept: "application/json",
      ...(options.headers ? options.headers() : {}),
    };
    const token = options.csrfToken();
    if (token) headers["X-CSRFToken"] = token;
    let response: Awaited<ReturnType<typeof fetch>>;
    try {
      response = await doFetch(`${options.baseUrl ?? ""}/api/web/mqtt-credential`, {
        method: "POST",
        credentials: "same-origin",
        headers,
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw new CredentialError(0, `无法获取连接凭据：${(err as Error).message}`);
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        const j = (await response.json()) as { message?: string };
        if (j.message) message = j.message;
      } catch {
        /* not JSON */
      }
      throw new CredentialError(response.status, message);
    }
    return (await response.json()) as Credential;
  };
}
