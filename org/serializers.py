"""Input and output shapes of org requests, shared by the MQTT handlers and the REST API.

Inputs check types and lengths only; references, permissions and tree rules are the services'.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from mchat.errors import EMPTY_MESSAGES
from mchat.wire import isoformat_z
from org.models import AgentProfile, Department, Employee

ID_SLUG_PATTERN = r"^[a-z0-9]{1,40}$"


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, so a misspelt field is a 400, not a silent no-op."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: [_("不是可修改的字段")]})
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true/false only: a JSON client sending "no" or 0 gets a 400, not a guess.
    ("true"/"false" strings are accepted for the browsable API's forms.)"""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if data in ("true", "false", "True", "False"):
            return data.lower() == "true"
        self.fail("invalid", input=data)


def _text(max_length: int, **kwargs) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length,
        allow_blank=True,
        trim_whitespace=True,
        required=False,
        **kwargs,
    )


def _public_id(**kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=64, **kwargs)


class AgentInput(StrictSerializer):
    description = _text(500)
    capabilities = serializers.ListField(
        child=serializers.CharField(max_length=50), max_length=50, required=False
    )
    skills_badge = serializers.ListField(
        child=serializers.CharField(max_length=50), max_length=20, required=False
    )
    owner = _public_id(required=False, allow_null=True, allow_blank=True)
    ack_deadline_seconds = serializers.IntegerField(min_value=1, max_value=600, required=False)


class EmployeeFieldsInput(StrictSerializer):
    """The fields employee.update may carry in `updates` (all optional)."""

    name = serializers.CharField(max_length=100, required=False, error_messages=EMPTY_MESSAGES)
    department_id = _public_id(required=False, allow_null=True, allow_blank=True)
    manager_id = _public_id(required=False, allow_null=True, allow_blank=True)
    title = _text(100)
    email = serializers.EmailField(allow_blank=True, required=False)
    phone = _text(32)
    avatar = _text(500)
    signature = _text(200)
    is_org_admin = StrictBooleanField(required=False)
    is_active = StrictBooleanField(required=False)
    agent = AgentInput(required=False)


class EmployeeCreateInput(serializers.Serializer):
    """employee.create (spec 3.3); unknown keys are ignored like any request envelope field."""

    name = serializers.CharField(max_length=100, error_messages=EMPTY_MESSAGES)
    is_ai_agent = StrictBooleanField(default=False)
    is_org_admin = StrictBooleanField(default=False)
    department_id = _public_id(required=False, allow_null=True, allow_blank=True)
    manager_id = _public_id(required=False, allow_null=True, allow_blank=True)
    title = _text(100)
    email = serializers.EmailField(allow_blank=True, required=False)
    phone = _text(32)
    avatar = _text(500)
    signature = _text(200)
    id_slug = serializers.RegexField(
        ID_SLUG_PATTERN,
        required=False,
        error_messages={"invalid": _("只能包含小写字母和数字（1-40 位）")},
        help_text="Readable part of the new id: ai_{id_slug}_001 (default: the name's pinyin).",
    )
    employee_id = _public_id(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="An explicit id (e.g. from an HR system); default: generated from the name.",
    )
    agent = AgentInput(required=False)


class EmployeeUpdateInput(serializers.Serializer):
    employee_id = _public_id(error_messages=EMPTY_MESSAGES)
    updates = EmployeeFieldsInput(error_messages=EMPTY_MESSAGES)


class OrgTreeInput(serializers.Serializer):
    version = serializers.CharField(max_length=64, required=False, allow_null=True)

    def to_internal_value(self, data):
        # Integer versions from clients that stored them as numbers compare as text.
        if isinstance(data, dict) and isinstance(data.get("version"), int):
            data = {**data, "version": str(data["version"])}
        return super().to_internal_value(data)


class DepartmentCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, error_messages=EMPTY_MESSAGES)
    parent_id = _public_id(required=False, allow_null=True, allow_blank=True)
    sort_order = serializers.IntegerField(default=0, min_value=-(2**31) + 1, max_value=2**31 - 1)
    department_id = _public_id(required=False, allow_null=True, allow_blank=True)


class DepartmentFieldsInput(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False, error_messages=EMPTY_MESSAGES)
    parent_id = _public_id(required=False, allow_null=True, allow_blank=True)
    sort_order = serializers.IntegerField(required=False, min_value=-(2**31) + 1, max_value=2**31 - 1)


class DepartmentUpdateInput(serializers.Serializer):
    department_id = _public_id(error_messages=EMPTY_MESSAGES)
    updates = DepartmentFieldsInput(error_messages=EMPTY_MESSAGES)


class DepartmentDeleteInput(serializers.Serializer):
    department_id = _public_id(error_messages=EMPTY_MESSAGES)
    move_to = _public_id(required=False, allow_null=True, allow_blank=True)
    challenge_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    token = serializers.CharField(max_length=128, required=False, allow_null=True)


# --- outputs ---------------------------------------------------------------------------------


class TimestampField(serializers.DateTimeField):
    """Spec timestamps: "2025-02-03T10:00:00.000Z"."""

    def to_representation(self, value):
        return isoformat_z(value) if value else None


class AgentOutput(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="employee_id", read_only=True)

    class Meta:
        model = AgentProfile
        fields = [
            "description",
            "capabilities",
            "skills_badge",
            "owner",
            "ack_deadline_seconds",
        ]


class EmployeeOutput(serializers.ModelSerializer):
    department_id = serializers.SlugRelatedField(
        source="department", slug_field="department_id", read_only=True
    )
    manager_id = serializers.SlugRelatedField(source="manager", slug_field="employee_id", read_only=True)
    agent = serializers.SerializerMethodField()
    created_at = TimestampField(read_only=True)
    updated_at = TimestampField(read_only=True)
    last_seen_at = TimestampField(read_only=True)

    class Meta:
        model = Employee
        fields = [
            "employee_id",
            "name",
            "department_id",
            "manager_id",
            "is_ai_agent",
            "is_org_admin",
            "is_active",
            "title",
            "email",
            "phone",
            "avatar",
            "signature",
            "agent",
            "created_at",
            "updated_at",
            "last_seen_at",
        ]

    def get_agent(self, employee: Employee) -> dict | None:
        try:
            profile = employee.agent_profile
        except AgentProfile.DoesNotExist:
            return None
        return AgentOutput(profile).data


class MqttConnectionOutput(serializers.Serializer):
    broker_host = serializers.CharField()
    broker_port = serializers.IntegerField()
    use_tls = serializers.BooleanField()
    mqtt_username = serializers.CharField()
    mqtt_password = serializers.CharField(help_text="Shown only in this response.")


class IssuedEmployeeOutput(EmployeeOutput):
    """An employee with its new credential, shown once (create, reset-credentials)."""

    mqtt_connection = MqttConnectionOutput(read_only=True)

    class Meta(EmployeeOutput.Meta):
        fields = [*EmployeeOutput.Meta.fields, "mqtt_connection"]


class DepartmentOutput(serializers.ModelSerializer):
    parent_id = serializers.SlugRelatedField(source="parent", slug_field="department_id", read_only=True)
    created_at = TimestampField(read_only=True)
    updated_at = TimestampField(read_only=True)

    class Meta:
        model = Department
        fields = [
            "department_id",
            "name",
            "parent_id",
            "sort_order",
            "created_at",
            "updated_at",
        ]


class OrgTreeDepartmentOutput(serializers.Serializer):
    department_id = serializers.CharField()
    name = serializers.CharField()
    parent_id = serializers.CharField(allow_null=True)
    sort_order = serializers.IntegerField()


class OrgTreeEmployeeOutput(serializers.Serializer):
    employee_id = serializers.CharField()
    name = serializers.CharField()
    department_id = serializers.CharField(allow_null=True)
    manager_id = serializers.CharField(allow_null=True)
    is_ai_agent = serializers.BooleanField()


class OrgTreeOutput(serializers.Serializer):
    version = serializers.CharField()
    unchanged = serializers.BooleanField(required=False)
    departments = OrgTreeDepartmentOutput(many=True, required=False)
    employees = OrgTreeEmployeeOutput(many=True, required=False)
