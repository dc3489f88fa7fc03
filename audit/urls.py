"""REST API of the audit log under /api/v1/ (mchat/urls.py includes this at the root)."""

from django.urls import path

from audit.api import AuditEventListView

urlpatterns = [
    path("api/v1/audit-events/", AuditEventListView.as_view(), name="audit-events"),
]
