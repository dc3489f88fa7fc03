// Errors of the MChat client: one class per response code (docs/protocol.md §1.3), like
// mchat_sdk.errors, plus RequestTimeout (no answer in time) and ConnectionClosed.

export class MChatError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly action: string,
    readonly seqId: string,
    readonly data: unknown = null,
  ) {
    super(message);
    this.name = "MChatError";
  }
}

export class BadRequest extends MChatError {}
export class Unauthenticated extends MChatError {}
export class Forbidden extends MChatError {}
export class NotFound extends MChatError {}
export class RateLimited extends MChatError {
  get retryAfterMs(): number {
    const d = this.data as { retry_after_ms?: unknown } | null;
    return typeof d?.retry_after_ms === "number" ? d.retry_after_ms : 1000;
  }
}
export class ServerError extends MChatError {}
/** 504: e.g. "Agent 响应超时". The outcome may have happened; retrying the seq_id is safe. */
export class Timeout extends MChatError {}

/** No response within the request's timeout (after its retries). Retrying the seq_id is safe. */
export class RequestTimeout extends MChatError {
  constructor(action: string, seqId: string, timeoutMs: number) {
    super(-1, `${action} 在 ${timeoutMs} ms 内没有响应；可用同一 seq_id 重试`, action, seqId);
    this.name = "RequestTimeout";
  }
}

/** The client was closed (signed out) while the request waited. */
export class ConnectionClosed extends MChatError {
  constructor(action: string, seqId: string) {
    super(-2, "连接已关闭", action, seqId);
    this.name = "ConnectionClosed";
  }
}

const BY_CODE: Record<number, typeof MChatError> = {
  400: BadRequest,
  401: Unauthenticated,
  403: Forbidden,
  404: NotFound,
  429: RateLimited,
  500: ServerError,
  504: Timeout,
};

export function errorFor(
  response: { code: number; message: string; data: unknown },
  action: string,
  seqId: string,
): MChatError {
  const Cls = BY_CODE[response.code] ?? MChatError;
  const err = new Cls(response.code, response.message || `错误 ${response.code}`, action, seqId, response.data);
  err.name = Cls.name;
  return err;
}
