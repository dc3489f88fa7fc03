"""Agent actions: agent.capability_list (spec 3.15)."""

from __future__ import annotations

from rest_framework import serializers

from bridge.handlers import Request, validate
from org.agents import AgentMatch, agent_capability_list


class CapabilityListInput(serializers.Serializer):
    skill = serializers.CharField(max_length=50, required=False, allow_blank=True, allow_null=True)
    department_id = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)


def capability_list(request: Request) -> dict:
    fields = validate(CapabilityListInput, request.payload)
    skill = (fields.get("skill") or "").strip() or None
    matches = agent_capability_list(skill=skill, department_id=fields.get("department_id") or None)
    return {
        "skill": skill,
        "agent_ids": [m.employee.employee_id for m in matches],
        "agent_profiles": [_profile(m) for m in matches],
    }


def _profile(match: AgentMatch) -> dict:
    agent, profile = match.employee, match.profile
    owner = profile.owner if profile else None
    return {
        # spec 3.15
        "employee_id": agent.employee_id,
        "name": agent.name,
        "capabilities": match.capabilities,
        "skills_badge": match.skills_badge,
        # ours
        "description": profile.description if profile else "",
        "owner_id": owner.employee_id if owner else None,
        "department_id": agent.department.department_id if agent.department else None,
        "online": match.online,
        "match": match.match,
    }
