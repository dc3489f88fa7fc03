"""REST API of the organisation under /api/v1/ (mchat/urls.py includes this at the root)."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from org.api import AgentCardView, DepartmentViewSet, EmployeeViewSet, OrgTreeView

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("departments", DepartmentViewSet, basename="department")
router.register("employees", EmployeeViewSet, basename="employee")

urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("api/v1/org/tree/", OrgTreeView.as_view(), name="org-tree"),
    path("api/v1/agents/<str:employee_id>/card", AgentCardView.as_view(), name="agent-card"),
]
