"""system_notice_broadcast: spec 3.19 on mchat/system/notify, org admins (or the console) only."""

import pytest

from mchat.errors import BadRequest, PermissionDenied
from org import services
from org.models import SystemNotice

pytestmark = pytest.mark.django_db


def test_an_org_admin_broadcasts(org_admin, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notice = services.system_notice_broadcast(
            actor=org_admin, title="放假通知", body={"text": "周五下午放假"}
        )
    [message] = published.messages
    assert (message.topic, message.qos, message.retain) == (
        "mchat/system/notify",
        1,
        False,
    )
    assert set(message.payload) == {"notify_id", "type", "title", "body", "created_at"}
    assert message.payload["type"] == "system_notice"
    assert message.payload["body"] == {"text": "周五下午放假", "operator_id": org_admin.employee_id}
    assert notice.sent_by == org_admin.employee_id


def test_others_may_not_and_empty_notices_are_refused(alice, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(PermissionDenied):
            services.system_notice_broadcast(actor=alice, title="x", body="y")
        with pytest.raises(BadRequest, match="title 不能为空"):
            services.system_notice_broadcast(actor=None, title=" ", body="y")
        with pytest.raises(BadRequest, match="body 不能为空"):
            services.system_notice_broadcast(actor=None, title="x", body="")
    assert published.messages == []
    assert not SystemNotice.objects.exists()
