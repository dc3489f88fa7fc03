"""The admin console for groups and messages: pages render; writes go through the services."""

from __future__ import annotations

import pytest
from django.urls import reverse

from messaging import services
from messaging.models import Conversation, Group, Message

pytestmark = pytest.mark.django_db

# The read-only members inline still posts its management form.
MEMBERS_INLINE = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}


@pytest.fixture
def group_with_message(make_group, alice, bob, django_capture_on_commit_callbacks):
    group = make_group(alice, bob)
    with django_capture_on_commit_callbacks(execute=True):
        message = services.message_send_group(actor=bob, group_id=group.group_id, content="你好")
    return group, message


def test_pages_render(admin_client, group_with_message):
    group, message = group_with_message
    conversation = Conversation.objects.get(group=group)
    for url in (
        reverse("admin:messaging_group_changelist"),
        reverse("admin:messaging_group_change", args=[group.pk]),
        reverse("admin:messaging_message_changelist"),
        reverse("admin:messaging_message_change", args=[message.pk]),
        reverse("admin:messaging_conversation_changelist"),
        reverse("admin:messaging_conversation_change", args=[conversation.pk]),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    listing = admin_client.get(reverse("admin:messaging_group_changelist")).content.decode()
    assert group.group_id in listing
    # Messages are read-only: no add page, no editable change form.
    assert admin_client.get(reverse("admin:messaging_message_add")).status_code == 403
    assert admin_client.get(reverse("admin:messaging_group_add")).status_code == 403


def test_renaming_in_the_console_goes_through_group_update(
    admin_client, published, group_with_message, bob, django_capture_on_commit_callbacks
):
    group, _message = group_with_message
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:messaging_group_change", args=[group.pk]),
            {"name": "新群名", "description": "console", **MEMBERS_INLINE},
        )
    assert response.status_code == 302
    group.refresh_from_db()
    assert (group.name, group.description) == ("新群名", "console")
    (note,) = [p for p in published.to(f"mchat/inbox/{bob.employee_id}") if p["type"] == "group_renamed"]
    # The console user is no employee: the documented system value names the operator.
    assert note["body"]["operator_id"] == "system" and note["body"]["old_name"] == "项目组"


def test_console_actions_dismiss_groups_and_recall_messages(
    admin_client, published, group_with_message, django_capture_on_commit_callbacks
):
    group, message = group_with_message
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:messaging_message_changelist"),
            {"action": "recall_messages", "_selected_action": [message.pk]},
        )
    message.refresh_from_db()
    assert message.is_recalled and message.recalled_by is None
    (event,) = published.to(f"mchat/group/{group.group_id}")
    assert event["type"] == "recall" and event["recalled_by"] == "system"  # no employee behind the user

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:messaging_group_changelist"),
            {"action": "dismiss_groups", "_selected_action": [group.pk]},
        )
    assert Group.objects.get(pk=group.pk).is_dismissed
    assert Message.objects.count() == 1  # history stays
