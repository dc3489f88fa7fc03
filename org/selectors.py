from org.models import Employee


def employee_for_connection(*, employee_id: str) -> Employee | None:
    """The active employee behind an MQTT connection, or None (the bridge answers 401)."""
    return (
        Employee.objects.filter(employee_id=employee_id, is_active=True)
        .only("id", "employee_id", "name", "is_org_admin", "is_ai_agent", "is_active")
        .first()
    )
