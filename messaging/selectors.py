from collections.abc import Iterator

from messaging.models import GroupMember


def group_memberships_for_broker() -> Iterator[tuple[str, str]]:
    """(group_id, employee_id) of every current membership the broker must let read."""
    return (
        GroupMember.objects.filter(
            group__dismissed_at__isnull=True, employee__is_active=True
        )
        .order_by("group__group_id", "employee__employee_id")
        .values_list("group__group_id", "employee__employee_id")
        .iterator(chunk_size=5000)
    )
