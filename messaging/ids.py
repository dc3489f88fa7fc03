"""Public identifiers: a prefix and a compact, time-ordered, unguessable id.

"msg_0193a4f1c2d85f3e9a1b7c4d": 12 hex digits of milliseconds since the epoch (ids sort by
creation time in logs and indexes) and 12 random hex digits (48 bits).
"""

import secrets
import time


def public_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def message_id() -> str:
    return public_id("msg")


def group_id() -> str:
    return public_id("grp")


def notification_id() -> str:
    return public_id("notify")
