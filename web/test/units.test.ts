import { describe, expect, it } from "vitest";
import { contentSummary, safeHttpUrl } from "../src/client/content";
import { CredentialError, cookieValue, webCredentialProvider } from "../src/client/credential";
import { classify } from "../src/client/deliveries";
import type { Credential } from "../src/client/types";

const ME = "emp_a_001";

describe("classify", () => {
  it("tells deliveries apart by topic and type", () => {
    expect(classify(`mchat/inbox/${ME}`, JSON.stringify({ type: "read_receipt", conversation_type: "private", reader_id: "emp_b", msg_id: "m", seq: 3, read_at: "t" }), ME)).toMatchObject({
      kind: "receipt",
      conversation: { type: "private", id: "emp_b" },
    });
    expect(classify(`mchat/inbox/${ME}`, JSON.stringify({ type: "read_position", conversation_type: "group", group_id: "grp_1", last_read_seq: 4, read_at: "t" }), ME)).toMatchObject({
      kind: "read_position",
      conversation: { type: "group", id: "grp_1" },
    });
    expect(classify(`mchat/inbox/${ME}`, JSON.stringify({ type: "recall", msg_id: "m", seq: 2, recalled_by: ME, recalled_at: "t", conversation_type: "private", from_employee_id: ME, to_employee_id: "emp_b" }), ME)).toMatchObject({
      kind: "recall",
      conversation: { type: "private", id: "emp_b" },
    });
    expect(classify(`mchat/inbox/${ME}`, JSON.stringify({ notify_id: "n", type: "member_joined", title: "x", body: {}, created_at: "t" }), ME)?.kind).toBe("notification");
    expect(classify("mchat/status/emp_b", "", ME)).toMatchObject({ kind: "status", employeeId: "emp_b", data: null });
    expect(classify("mchat/profile/emp_b", JSON.stringify({ employee_id: "emp_b", event: "updated", fields: [], profile: {}, updated_at: "t" }), ME)?.kind).toBe("profile");
    expect(classify("mchat/system/notify", JSON.stringify({ notify_id: "n", type: "system_notice", title: "维护", body: { text: "x" }, created_at: "t" }), ME)?.kind).toBe("system");
    expect(classify(`mchat/inbox/${ME}`, "not json", ME)).toBeNull();
  });
});

describe("content", () => {
  it("accepts only http(s) URLs and same-origin paths", () => {
    expect(safeHttpUrl("https://files.example.com/a.png")).toBe("https://files.example.com/a.png");
    expect(safeHttpUrl("/files/x?t=1")).toBe("/files/x?t=1");
    expect(safeHttpUrl("javascript:alert(1)")).toBeNull();
    expect(safeHttpUrl("data:text/html,<script>")).toBeNull();
    expect(safeHttpUrl("//evil.example/x")).toBeNull();
    expect(safeHttpUrl(42)).toBeNull();
  });
  it("summarises content as text", () => {
    expect(contentSummary("你好")).toBe("你好");
    expect(contentSummary({ type: "image", key: "k" })).toBe("[图片]");
    expect(contentSummary({ type: "file", name: "报告.pdf" })).toBe("[文件] 报告.pdf");
    expect(contentSummary(null)).toBe("");
  });
});

describe("webCredentialProvider", () => {
  const cred: Credential = {
    employee: { employee_id: ME, name: "甲" },
    client_id: `${ME}_web-1f2e`,
    username: ME,
    password: "p",
    expires_at: "2030-01-01T00:00:00Z",
    refresh_in_seconds: 240,
    ws_url: "ws://127.0.0.1:8083",
  };

  it("posts with the CSRF token and keeps the previous device", async () => {
    const calls: { url: string; init: RequestInit }[] = [];
    const provider = webCredentialProvider({
      baseUrl: "http://127.0.0.1:8000",
      csrfToken: () => cookieValue("a=1; csrftoken=tok%3D; b=2", "csrftoken"),
      fetch: (async (url: string, init: RequestInit) => {
        calls.push({ url, init });
        return new Response(JSON.stringify(cred), { status: 200 });
      }) as unknown as typeof fetch,
    });
    await provider();
    await provider(cred);
    expect(calls[0].url).toBe("http://127.0.0.1:8000/api/web/mqtt-credential");
    expect(calls[0].init.method).toBe("POST");
    expect((calls[0].init.headers as Record<string, string>)["X-CSRFToken"]).toBe("tok=");
    expect(JSON.parse(String(calls[0].init.body))).toEqual({});
    expect(JSON.parse(String(calls[1].init.body))).toEqual({ device: "web-1f2e" });
  });

  it("401 becomes a CredentialError that means signed out", async () => {
    const provider = webCredentialProvider({
      csrfToken: () => null,
      fetch: (async () => new Response(JSON.stringify({ code: 401, message: "请先登录" }), { status: 401 })) as unknown as typeof fetch,
    });
    const err = await provider().catch((e) => e);
    expect(err).toBeInstanceOf(CredentialError);
    expect(err.signedOut).toBe(true);
    expect(err.message).toBe("请先登录");
  });
});
