"""Agent Cards (issue 17, DESIGN §9): an A2A-style card built from an agent's profile.

The field names are A2A's (AgentCard, AgentSkill, AgentCapabilities, AgentProvider, in their
JSON spelling). The `a2a-sdk` package's card types are protobuf messages since 1.x and pull in
google-api-core, protobuf, httpx and json-rpc for what is a dozen plain fields here, so the
card is these small typed dataclasses instead. What A2A has no field for (owner,
acknowledgement deadline, task states, how to reach the agent over MChat) is under `mchat`.

Skills are set by HR (console) as [{id, name, description, examples, tags}] and checked by
`skills_clean`; an agent without skills shows one skill per capability.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from mchat.errors import BadRequest, NotFound
from org import presence
from org.models import AgentProfile, Employee

PROTOCOL_VERSION = "0.3.0"
SKILLS_MAX = 50
SKILL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TASK_STATES = ["submitted", "working", "input-required", "completed", "failed", "canceled"]


@dataclass(frozen=True)
class AgentSkill:
    id: str
    name: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AgentCapabilities:
    streaming: bool = True
    pushNotifications: bool = False  # A2A's name
    stateTransitionHistory: bool = False  # A2A's name


@dataclass(frozen=True)
class AgentProvider:
    organization: str
    url: str = ""


@dataclass(frozen=True)
class AgentCard:
    name: str
    description: str
    url: str
    version: str
    capabilities: AgentCapabilities
    skills: list[AgentSkill]
    defaultInputModes: list[str]  # A2A's name
    defaultOutputModes: list[str]  # A2A's name
    protocolVersion: str = PROTOCOL_VERSION  # A2A's name
    preferredTransport: str = "MCHAT-MQTT"  # A2A's name
    provider: AgentProvider | None = None
    mchat: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def agent_card(*, employee_id: str) -> dict[str, Any]:
    """The card of an active AI agent; 404 for anyone else."""
    agent = (
        Employee.objects.filter(employee_id=employee_id, is_active=True, is_ai_agent=True)
        .select_related("agent_profile", "agent_profile__owner", "department")
        .first()
    )
    if agent is None:
        raise NotFound(_("AI Agent 不存在：%(id)s") % {"id": employee_id})
    profile: AgentProfile | None = getattr(agent, "agent_profile", None)
    owner = profile.owner if profile else None
    online = (
        presence.presence_of([agent.employee_id]).get(agent.employee_id, {}).get("status") == presence.ONLINE
    )
    card = AgentCard(
        name=agent.name,
        description=(profile.description if profile else "") or agent.title or "",
        url=f"mchat://agents/{agent.employee_id}",
        version=(agent.updated_at.strftime("%Y%m%d%H%M%S") if getattr(agent, "updated_at", None) else "1"),
        capabilities=AgentCapabilities(streaming=True),
        skills=card_skills(profile),
        defaultInputModes=["text/plain", "image/*", "application/octet-stream"],
        defaultOutputModes=["text/plain"],
        provider=AgentProvider(organization=agent.department.name if agent.department else ""),
        mchat={
            "employee_id": agent.employee_id,
            "owner": {"employee_id": owner.employee_id, "name": owner.name} if owner else None,
            "ack_deadline_seconds": profile.ack_deadline_seconds if profile else 10,
            "capabilities": list(profile.capabilities) if profile else [],
            "skills_badge": list(profile.skills_badge) if profile else [],
            "task_states": TASK_STATES,
            "streaming": True,
            "online": online,
            "reach": {
                "action": "msg.send_private",
                "to_employee_id": agent.employee_id,
                "request_topic": "mchat/msg/req/{client_id}/{seq_id}",
                "replies_on": "mchat/inbox/{your employee_id}",
                "task_id": "the msg_id of your msg.send_private",
            },
        },
    )
    return card.as_json()


def card_skills(profile: AgentProfile | None) -> list[AgentSkill]:
    if profile is None:
        return []
    if profile.skills:
        return [AgentSkill(**skill) for skill in profile.skills]
    return [
        AgentSkill(id=f"capability-{index}", name=str(name), tags=[str(name)])
        for index, name in enumerate(profile.capabilities, start=1)
    ]


def skill_terms(profile: AgentProfile | None) -> list[str]:
    """What agent.capability_list matches a skill search against besides capabilities: each
    skill's id, name and tags."""
    if profile is None or not profile.skills:
        return []
    terms: list[str] = []
    for skill in profile.skills:
        terms += [skill.get("id", ""), skill.get("name", ""), *skill.get("tags", [])]
    return [t for t in terms if t]


def skills_clean(value: Any, *, field: str = "agent.skills") -> list[dict[str, Any]]:
    """Validated skills in the card's shape; BadRequest naming the offending field."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise BadRequest(_("%(field)s 不是有效的 JSON") % {"field": field}) from None
    if not isinstance(value, list):
        raise BadRequest(_("%(field)s 必须是列表") % {"field": field})
    if len(value) > SKILLS_MAX:
        raise BadRequest(_("%(field)s 最多 %(max)d 项") % {"field": field, "max": SKILLS_MAX})
    skills, seen = [], set()
    for index, raw in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(raw, dict):
            raise BadRequest(_("%(field)s 必须是对象") % {"field": where})
        unknown = sorted(set(raw) - {"id", "name", "description", "tags", "examples"})
        if unknown:
            raise BadRequest(_("%(field)s 不是技能的字段") % {"field": f"{where}.{unknown[0]}"})
        skill_id = _string(raw.get("id"), f"{where}.id", 64, required=True)
        if not SKILL_ID_RE.match(skill_id):
            raise BadRequest(_("%(field)s 只能包含字母、数字、_ . -") % {"field": f"{where}.id"})
        if skill_id in seen:
            raise BadRequest(_("%(field)s 重复：%(id)s") % {"field": f"{where}.id", "id": skill_id})
        seen.add(skill_id)
        skills.append(
            {
                "id": skill_id,
                "name": _string(raw.get("name"), f"{where}.name", 100, required=True),
                "description": _string(raw.get("description"), f"{where}.description", 500),
                "tags": _strings(raw.get("tags"), f"{where}.tags", 20, 50),
                "examples": _strings(raw.get("examples"), f"{where}.examples", 10, 200),
            }
        )
    return skills


def _string(value: Any, field: str, max_length: int, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadRequest(_("%(field)s 必须是字符串") % {"field": field})
    value = value.strip()
    if required and not value:
        raise BadRequest(_("%(field)s 不能为空") % {"field": field})
    if len(value) > max_length:
        raise BadRequest(_("%(field)s 不能超过 %(max)d 个字符") % {"field": field, "max": max_length})
    return value


def _strings(value: Any, field: str, max_items: int, max_length: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(_("%(field)s 必须是字符串列表") % {"field": field})
    if len(value) > max_items:
        raise BadRequest(_("%(field)s 最多 %(max)d 项") % {"field": field, "max": max_items})
    items = [_string(v, f"{field}[{i}]", max_length) for i, v in enumerate(value)]
    return list(dict.fromkeys(i for i in items if i))
