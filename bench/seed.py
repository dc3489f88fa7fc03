"""The benchmark's organisation, written in bulk through the ORM (Django must be set up).

Departments (a root, divisions, teams), employees `bench_00000`... sharing one MQTT password
(each row holds the same $7$ hash), team leads as managers, `org_groups` groups of
`group_size` random members, and the fan-out groups (members bench_00000... in order, owned
by bench_00000, the org admin). Deterministic for a given seed.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from messaging import ids
from messaging.models import Conversation, Group, GroupMember, ReadPosition
from org.credentials import hash_password
from org.models import Department, Employee

DIVISIONS = 10
TEAMS_PER_DIVISION = 10
RESERVED_TAIL = 64  # the last employees: senders, recipients, member_add targets; in no org group


@dataclass
class Population:
    password: str
    employee_ids: list[str]
    fanout_groups: dict[int, str] = field(default_factory=dict)  # size -> group_id
    org_groups: list[tuple[str, list[str]]] = field(default_factory=list)  # (group_id, members)

    @property
    def admin_id(self) -> str:
        return self.employee_ids[0]

    def summary(self) -> dict:
        return {
            "employees": len(self.employee_ids),
            "departments": 1 + DIVISIONS * (1 + TEAMS_PER_DIVISION),
            "org_groups": len(self.org_groups),
            "org_group_size": len(self.org_groups[0][1]) if self.org_groups else 0,
            "fanout_groups": {str(k): v for k, v in self.fanout_groups.items()},
        }


def employee_id(n: int) -> str:
    return f"bench_{n:05d}"


def seed(
    *, employees: int, org_groups: int, group_size: int, fanout_sizes: list[int], rng_seed: int = 7
) -> Population:
    rng = random.Random(rng_seed)
    password = secrets.token_urlsafe(18)
    hashed = hash_password(password)
    with transaction.atomic():
        teams = _departments()
        people = _employees(employees, teams, hashed)
    population = Population(password=password, employee_ids=[e.employee_id for e in people])
    fanout_sizes = [s for s in fanout_sizes if s <= employees - RESERVED_TAIL]
    pool = people[max(fanout_sizes, default=0) : employees - RESERVED_TAIL]
    if len(pool) < group_size:
        pool = people[: employees - RESERVED_TAIL]
    plans: list[tuple[str, list[Employee]]] = []
    for size in fanout_sizes:
        plans.append((f"扇出 {size}", people[:size]))
    for n in range(org_groups):
        plans.append((f"项目组 {n}", rng.sample(pool, group_size)))
    groups = _groups(plans)
    for size, group in zip(fanout_sizes, groups, strict=False):
        population.fanout_groups[size] = group.group_id
    population.org_groups = [
        (group.group_id, [m.employee_id for m in members])
        for group, (_, members) in zip(groups[len(fanout_sizes) :], plans[len(fanout_sizes) :], strict=True)
    ]
    return population


def _departments() -> list[Department]:
    root = Department.objects.create(department_id="bench_root", name="基准公司")
    teams = []
    for d in range(DIVISIONS):
        division = Department.objects.create(
            department_id=f"bench_div_{d:02d}", name=f"事业部 {d}", parent=root, sort_order=d
        )
        for t in range(TEAMS_PER_DIVISION):
            teams.append(
                Department.objects.create(
                    department_id=f"bench_team_{d:02d}_{t:02d}",
                    name=f"团队 {d}-{t}",
                    parent=division,
                    sort_order=t,
                )
            )
    return teams


def _employees(count: int, teams: list[Department], hashed: str) -> list[Employee]:
    people = [
        Employee(
            employee_id=employee_id(n),
            name=f"员工{n:05d}",
            department=teams[n % len(teams)],
            is_org_admin=(n == 0),
            title="工程师",
            mqtt_password_hash=hashed,
        )
        for n in range(count)
    ]
    Employee.objects.bulk_create(people, batch_size=1000)
    people = list(Employee.objects.filter(employee_id__startswith="bench_").order_by("employee_id"))
    # The first employee of each team leads it.
    for team in teams:
        members = Employee.objects.filter(department=team).order_by("employee_id")
        lead = members.first()
        if lead is not None:
            members.exclude(pk=lead.pk).update(manager=lead)
    return people


def _groups(plans: list[tuple[str, list[Employee]]]) -> list[Group]:
    now = timezone.now()
    with transaction.atomic():
        groups = [Group(group_id=ids.group_id(), name=name, owner=members[0]) for name, members in plans]
        Group.objects.bulk_create(groups, batch_size=1000)
        by_id = {g.group_id: g for g in Group.objects.filter(group_id__in=[g.group_id for g in groups])}
        groups = [by_id[g.group_id] for g in groups]
        memberships = []
        for group, (_, members) in zip(groups, plans, strict=True):
            memberships.append(GroupMember(group=group, employee=members[0], role=GroupMember.Role.OWNER))
            memberships += [
                GroupMember(group=group, employee=m, role=GroupMember.Role.MEMBER) for m in members[1:]
            ]
        GroupMember.objects.bulk_create(memberships, batch_size=5000)
        conversations = [
            Conversation(kind=Conversation.Kind.GROUP, group=g, last_activity_at=now) for g in groups
        ]
        Conversation.objects.bulk_create(conversations, batch_size=1000)
        by_group = {c.group_id: c for c in Conversation.objects.filter(group__in=groups)}
        positions = [
            ReadPosition(conversation=by_group[group.pk], employee=m)
            for group, (_, members) in zip(groups, plans, strict=True)
            for m in members
        ]
        ReadPosition.objects.bulk_create(positions, batch_size=5000)
    return groups
