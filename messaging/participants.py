"""Who sends and who receives, as the message store, payloads and events read them.

A send between a pair this process has seen is served before anyone is looked up
(messaging.services.private_sends): all it knows of the two employees is what it remembered.
So the store and the deliveries take this small value, complete in what it says, rather than
an Employee model instance with most of its fields missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from org.models import Employee


@dataclass(frozen=True, slots=True)
class Participant:
    """An employee as a message's sender or recipient."""

    pk: int
    employee_id: str
    is_ai_agent: bool = False

    @classmethod
    def of(cls, employee: Employee) -> Participant:
        return cls(employee.pk, employee.employee_id, employee.is_ai_agent)
