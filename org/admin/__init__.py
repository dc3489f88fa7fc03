"""The HR console: departments (drag-and-drop tree), employees, agents, system notices.

Thin by design: every write goes through org.services (admin users are trusted callers,
actor=None, after Django's own permission checks), so ids, the tree lock, the org version,
profile events and broker credentials behave exactly as over MQTT. A service refusal is shown
as a form error on the re-rendered form.
"""

from org import (
    lockout_admin,  # the unlock action on Axes' list of sign-in lock-outs
    web_sessions_admin,  # HR lists and ends employees' web sign-ins
)
from org.admin import departments, employees, notices

__all__ = ["departments", "employees", "lockout_admin", "notices", "web_sessions_admin"]
