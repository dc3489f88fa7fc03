"""Typed errors: one class per response code of the wire contract (spec 1.2, 3.20).

    try:
        client.send_private("emp_lisi_002", "你好")
    except mchat_sdk.NotFound as error:
        print(error.code, error.message)

`MChatError` is the base of everything the SDK raises about a request. A response with a code
other than 0 becomes the class for that code; a request that got no response in time becomes
`RequestTimeout` (the request may or may not have been executed: send it again with the same
`seq_id`, the server executes it at most once).
"""

from __future__ import annotations

from typing import Any


class MChatError(Exception):
    """A request was refused or failed. `code`, `message` and `data` are the server's answer."""

    code: int = 0

    def __init__(
        self,
        message: str = "",
        *,
        code: int | None = None,
        data: Any = None,
        action: str | None = None,
        seq_id: str | None = None,
    ):
        if code is not None:
            self.code = code
        self.message = message
        self.data = data
        self.action = action
        self.seq_id = seq_id
        super().__init__(f"{self.code} {message}" if self.code else message)


class BadRequest(MChatError):
    """400: a field is missing or invalid; `message` names it (e.g. "member_ids 不能为空")."""

    code = 400


class Unauthenticated(MChatError):
    """401: the connection is not bound to an active employee, or a challenge was refused."""

    code = 401


class Forbidden(MChatError):
    """403: authenticated but not allowed."""

    code = 403


class NotFound(MChatError):
    """404: the employee, department, group or message does not exist (or is not visible)."""

    code = 404


class Conflict(MChatError):
    """409: the target's state does not allow it (a stream already ended or canceled, a task
    already finished)."""

    code = 409


class RateLimited(MChatError):
    """429: too many requests; wait `retry_after_ms` milliseconds."""

    code = 429

    @property
    def retry_after_ms(self) -> int:
        if isinstance(self.data, dict):
            try:
                return max(0, int(self.data.get("retry_after_ms", 0)))
            except (TypeError, ValueError):
                return 0
        return 0


class ServerError(MChatError):
    """500 (or any code the SDK does not know): `data.error_id` identifies it in the server log."""

    code = 500

    @property
    def error_id(self) -> str | None:
        return self.data.get("error_id") if isinstance(self.data, dict) else None


class Timeout(MChatError):
    """504: a deadline passed on the server, e.g. "Agent 响应超时" when an AI agent did not
    acknowledge a private message in time. The message was stored and will be delivered."""

    code = 504


class RequestTimeout(MChatError):
    """No response arrived within the client's timeout (network, broker or bridge down).

    Not a server answer (`code` is 0). Retrying with the same `seq_id` is safe.
    """

    code = 0


class ConnectionFailed(MChatError):
    """The broker refused the connection (wrong credential, bad client id) or is unreachable."""

    code = 0


ERRORS_BY_CODE: dict[int, type[MChatError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    500: ServerError,
    504: Timeout,
}


def error_for(response: dict, *, action: str | None = None) -> MChatError:
    """The typed error for a response whose code is not 0."""
    try:
        code = int(response.get("code", 500))
    except (TypeError, ValueError):
        code = 500
    cls = ERRORS_BY_CODE.get(code, ServerError)
    return cls(
        str(response.get("message", "")),
        code=code,
        data=response.get("data"),
        action=action,
        seq_id=response.get("seq_id"),
    )
