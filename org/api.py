"""REST API for HR-system integration: departments, employees, the org tree (under /api/v1/).

Thin: parse with the same serializers as the MQTT handlers, call the same services (as a
trusted caller once Django's permissions passed), shape with output serializers. Errors go
through mchat.errors.drf_exception_handler: the same codes and Chinese messages as MQTT.

Authentication: `Authorization: Token <key>` (rest_framework.authtoken) for integration
accounts, or an admin session. Permission: a staff user holding the Django model permissions
(view / add / change / delete, and org.reset_credentials for credential resets). Anonymous
requests get 401, authenticated ones without the permission 403.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from org import selectors, services
from org.models import Department, Employee
from org.serializers import (
    DepartmentCreateInput,
    DepartmentFieldsInput,
    DepartmentOutput,
    EmployeeCreateInput,
    EmployeeFieldsInput,
    EmployeeOutput,
    IssuedEmployeeOutput,
    OrgTreeOutput,
)


class StaffModelPermissions(permissions.DjangoModelPermissions):
    """Staff users with the model permission for the method; reads need `view`."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False  # DRF answers 401 (TokenAuthentication sends a challenge)
        return user.is_staff and super().has_permission(request, view)


class _StaffWith(permissions.BasePermission):
    required: tuple[str, ...] = ()

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.has_perms(self.required))


class CanViewOrg(_StaffWith):
    required = ("org.view_department", "org.view_employee")


class CanResetCredentials(_StaffWith):
    required = ("org.change_employee", "org.reset_credentials")


class EmployeePages(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@extend_schema_view(
    list=extend_schema(summary="部门列表（树序）", responses=DepartmentOutput(many=True)),
    retrieve=extend_schema(summary="部门详情", responses=DepartmentOutput),
    create=extend_schema(
        summary="创建部门",
        request=DepartmentCreateInput,
        responses={201: DepartmentOutput},
    ),
    partial_update=extend_schema(
        summary="修改部门（改名、移动、排序）",
        request=DepartmentFieldsInput,
        responses=DepartmentOutput,
    ),
    destroy=extend_schema(
        summary="删除部门",
        description="有员工或子部门时须用 move_to 指定转移到的部门，否则 400。",
        parameters=[OpenApiParameter("move_to", OpenApiTypes.STR, OpenApiParameter.QUERY)],
        responses={204: None},
    ),
)
class DepartmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Department.objects.none()  # for DjangoModelPermissions; reads use selectors
    serializer_class = DepartmentOutput
    permission_classes = [StaffModelPermissions]
    lookup_field = "department_id"
    lookup_value_regex = r"[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.department_list()

    def get_object(self):
        return selectors.department_get(department_id=self.kwargs["department_id"])

    def create(self, request: Request) -> Response:
        department = services.department_create(actor=None, **_validated(DepartmentCreateInput, request.data))
        return Response(DepartmentOutput(department).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, department_id: str) -> Response:
        department = services.department_update(
            actor=None,
            department_id=department_id,
            updates=_validated(DepartmentFieldsInput, request.data),
        )
        return Response(DepartmentOutput(department).data)

    def destroy(self, request: Request, department_id: str) -> Response:
        services.department_delete(
            actor=None,
            department_id=department_id,
            move_to=request.query_params.get("move_to") or request.data.get("move_to") or None,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        summary="员工列表",
        parameters=[
            OpenApiParameter("department_id", OpenApiTypes.STR, OpenApiParameter.QUERY),
            OpenApiParameter(
                "include_subdepartments",
                OpenApiTypes.BOOL,
                OpenApiParameter.QUERY,
                description="与 department_id 一起使用：包含下级部门的员工",
            ),
            OpenApiParameter("is_ai_agent", OpenApiTypes.BOOL, OpenApiParameter.QUERY),
            OpenApiParameter("is_active", OpenApiTypes.BOOL, OpenApiParameter.QUERY),
            OpenApiParameter("q", OpenApiTypes.STR, OpenApiParameter.QUERY, description="搜索"),
        ],
    ),
    retrieve=extend_schema(summary="员工详情"),
    create=extend_schema(
        summary="创建员工",
        description="响应中的 mqtt_connection.mqtt_password 只出现这一次。",
        request=EmployeeCreateInput,
        responses={201: IssuedEmployeeOutput},
    ),
    partial_update=extend_schema(
        summary="修改员工（含停用：is_active=false）",
        request=EmployeeFieldsInput,
        responses=EmployeeOutput,
    ),
)
class EmployeeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Employee.objects.none()  # for DjangoModelPermissions; reads use selectors
    serializer_class = EmployeeOutput
    permission_classes = [StaffModelPermissions]
    pagination_class = EmployeePages
    lookup_field = "employee_id"
    lookup_value_regex = r"[^/]+"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        params = self.request.query_params
        return selectors.employee_list(
            department_id=params.get("department_id") or None,
            include_subdepartments=_flag(params.get("include_subdepartments")) or False,
            is_ai_agent=_flag(params.get("is_ai_agent")),
            is_active=_flag(params.get("is_active")),
            search=params.get("q") or None,
        )

    def get_object(self):
        return selectors.employee_get(employee_id=self.kwargs["employee_id"])

    def create(self, request: Request) -> Response:
        issued = services.employee_create(actor=None, **_validated(EmployeeCreateInput, request.data))
        return Response(_issued(issued), status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, employee_id: str) -> Response:
        change = services.employee_update(
            actor=None,
            employee_id=employee_id,
            updates=_validated(EmployeeFieldsInput, request.data),
        )
        return Response(EmployeeOutput(selectors.employee_get(employee_id=change.employee.employee_id)).data)

    @extend_schema(
        summary="重置 MQTT 凭证",
        description="旧密码立即失效、在线连接被断开；新密码只在此响应中出现一次。"
        "需要 org.reset_credentials 权限。",
        request=None,
        responses=IssuedEmployeeOutput,
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="reset-credentials",
        permission_classes=[CanResetCredentials],
    )
    def reset_credentials(self, request: Request, employee_id: str) -> Response:
        employee = selectors.employee_get(employee_id=employee_id)
        return Response(_issued(services.employee_credential_reset(actor=None, employee=employee)))


def _issued(issued: services.IssuedCredential) -> dict:
    employee = selectors.employee_get(employee_id=issued.employee.employee_id)
    return {
        **EmployeeOutput(employee).data,
        "mqtt_connection": issued.mqtt_connection(),
    }


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in ("1", "true", "yes")


class OrgTreeView(APIView):
    permission_classes = [CanViewOrg]

    @extend_schema(
        summary="组织树（spec 3.5）",
        description="带上次的 version 请求：未变化时只返回 {version, unchanged: true}。",
        parameters=[OpenApiParameter("version", OpenApiTypes.STR, OpenApiParameter.QUERY)],
        responses=OrgTreeOutput,
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.org_tree(known_version=request.query_params.get("version")))


# --- agent cards (issue 17, org.agent_cards) --------------------------------------------------


class AgentCardView(APIView):
    """Any authenticated caller (an integration token, a signed-in session) may read a card."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="Agent 名片（A2A Agent Card）",
        description=(
            "由 Agent 档案生成的 A2A 风格名片：name、description、skills（id、name、description、"
            "examples、tags）、capabilities（streaming 等）、provider，以及 mchat 扩展（负责人、"
            "应答时限、任务状态、如何通过 MChat 联系）。与 MQTT 动作 agent.card 返回相同。"
        ),
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, employee_id: str) -> Response:
        from org.agent_cards import agent_card

        return Response(agent_card(employee_id=employee_id))
