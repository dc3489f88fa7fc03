"""Reads about AI-agent employees: who can do what (agent.capability_list, spec 3.15).

An agent offers `capabilities` (skills such as "订单查询"), set by its owner or an org admin
on its AgentProfile. A search by skill ranks agents whose capability equals the skill
(ignoring case) before those where it is a part of one; within each rank online agents come
first (org.presence), then by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from org import presence
from org.agent_cards import skill_terms
from org.models import AgentProfile, Employee
from org.selectors import department_get

EXACT = "exact"
PARTIAL = "partial"
ANY = "any"  # no skill asked for
_RANK = {EXACT: 0, PARTIAL: 1, ANY: 2}


@dataclass(frozen=True)
class AgentMatch:
    employee: Employee
    profile: AgentProfile | None  # None for an agent created before profiles existed
    match: str  # EXACT, PARTIAL or ANY
    online: bool

    @property
    def capabilities(self) -> list[str]:
        return list(self.profile.capabilities) if self.profile else []

    @property
    def skills_badge(self) -> list[str]:
        return list(self.profile.skills_badge) if self.profile else []


def agent_capability_list(*, skill: str | None = None, department_id: str | None = None) -> list[AgentMatch]:
    """Active AI agents offering `skill` (all of them without one), in `department_id` and its
    sub-departments when given (404 if it does not exist). Best match first, online first."""
    agents = Employee.objects.filter(is_ai_agent=True, is_active=True).select_related(
        "agent_profile", "agent_profile__owner", "department"
    )
    if department_id:
        department = department_get(department_id=department_id)
        agents = agents.filter(department__in=department.get_descendants(include_self=True))
    wanted = (skill or "").strip().casefold()
    found: list[tuple[Employee, AgentProfile | None, str]] = []
    for agent in agents:
        profile = getattr(agent, "agent_profile", None)
        match = _match(wanted, [*profile.capabilities, *skill_terms(profile)] if profile else [])
        if match is not None:
            found.append((agent, profile, match))
    statuses = presence.presence_of([agent.employee_id for agent, _, _ in found])
    matches = [
        AgentMatch(
            agent, profile, match, statuses.get(agent.employee_id, {}).get("status") == presence.ONLINE
        )
        for agent, profile, match in found
    ]
    matches.sort(key=lambda m: (_RANK[m.match], not m.online, m.employee.name, m.employee.employee_id))
    return matches


def _match(wanted: str, capabilities: list) -> str | None:
    if not wanted:
        return ANY
    names = [str(c).strip().casefold() for c in capabilities]
    if wanted in names:
        return EXACT
    if any(wanted in name for name in names):
        return PARTIAL
    return None
