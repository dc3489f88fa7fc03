"""Employees and agents in the console: creation with a one-time password, edits, import."""

from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export.admin import ImportExportMixin
from mptt.admin import TreeRelatedFieldListFilter

from mchat.db import instance_adopt
from mchat.errors import MChatError
from org import services, web_auth
from org.admin.forms import ServiceErrorsAsFormErrors
from org.models import AgentProfile, Department, Employee, WebAccount
from org.resources import EmployeeResource
from org.serializers import ID_SLUG_PATTERN

_LIST_SPLIT = re.compile(r"[,，、;；\n]+")


class StringListField(forms.CharField):
    """A JSON list of strings edited as text: one per line or separated by commas."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        return [item.strip() for item in _LIST_SPLIT.split(value or "") if item.strip()]

    def has_changed(self, initial, data):
        return (initial or []) != self.to_python(data)


class AgentProfileForm(forms.ModelForm):
    capabilities = StringListField(
        required=False,
        label=gettext_lazy("能力"),
        help_text=gettext_lazy("每行一项，或用逗号分隔"),
    )
    skills_badge = StringListField(
        required=False,
        label=gettext_lazy("技能徽章"),
        help_text=gettext_lazy("每行一项，或用逗号分隔"),
    )

    skills = forms.JSONField(
        required=False,
        label=gettext_lazy("技能"),
        help_text=gettext_lazy(
            'Agent 名片的技能（JSON 列表），如 [{"id": "track", "name": "物流跟踪", "description": "...", '
            '"examples": ["订单 1001 到哪了？"], "tags": ["物流"]}]'
        ),
        widget=forms.Textarea(attrs={"rows": 6}),
    )

    def clean_skills(self):
        from org.agent_cards import skills_clean

        try:
            return skills_clean(self.cleaned_data.get("skills") or [], field="skills")
        except MChatError as exc:
            raise forms.ValidationError(str(exc.message)) from None

    class Meta:
        model = AgentProfile
        fields = [
            "owner",
            "description",
            "capabilities",
            "skills_badge",
            "skills",
            "ack_deadline_seconds",
        ]


class AgentProfileInline(admin.StackedInline):
    model = AgentProfile
    fk_name = "employee"
    form = AgentProfileForm
    autocomplete_fields = ["owner"]
    can_delete = False
    extra = 1
    max_num = 1
    verbose_name = gettext_lazy("Agent 配置（仅 AI Agent）")
    verbose_name_plural = gettext_lazy("Agent 配置（仅 AI Agent）")


class EmployeeAddForm(forms.ModelForm):
    id_slug = forms.RegexField(
        regex=ID_SLUG_PATTERN,
        required=False,
        label=gettext_lazy("编号前缀"),
        help_text=gettext_lazy("可选：小写字母或数字，如 sales 生成 ai_sales_001；默认用姓名拼音。"),
    )

    class Meta:
        model = Employee
        fields = [
            "name",
            "id_slug",
            "is_ai_agent",
            "department",
            "manager",
            "title",
            "email",
            "phone",
            "avatar",
            "signature",
            "is_org_admin",
        ]


_PUBLIC = {"department": "department_id", "manager": "manager_id"}
_CHANGE_FIELDS = (
    "name",
    "department",
    "manager",
    "title",
    "email",
    "phone",
    "avatar",
    "signature",
    "is_org_admin",
    "is_active",
)


def _public_value(value):
    if isinstance(value, Department):
        return value.department_id
    if isinstance(value, Employee):
        return value.employee_id
    return value


@admin.register(Employee)
class EmployeeAdmin(ServiceErrorsAsFormErrors, ImportExportMixin, admin.ModelAdmin):
    resource_classes = [EmployeeResource]
    list_display = (
        "employee_id",
        "name",
        "department",
        "manager",
        "title",
        "is_ai_agent",
        "is_org_admin",
        "is_active",
        "last_seen_at",
    )
    list_display_links = ("employee_id", "name")
    list_filter = (
        ("department", TreeRelatedFieldListFilter),
        "is_ai_agent",
        "is_org_admin",
        "is_active",
    )
    search_fields = ("employee_id", "name", "email", "phone")
    autocomplete_fields = ("department", "manager")
    list_select_related = ("department", "manager")
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over every employee on each page
    ordering = ("employee_id",)
    actions = ("reset_credentials", "reset_web_password", "deactivate", "reactivate")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = EmployeeAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": ["name", "id_slug", "is_ai_agent", "is_org_admin"]}),
                (_("组织"), {"fields": ["department", "manager", "title"]}),
                (_("资料"), {"fields": ["email", "phone", "avatar", "signature"]}),
            ]
        return [
            (
                None,
                {
                    "fields": [
                        "employee_id",
                        "name",
                        "is_ai_agent",
                        "is_org_admin",
                        "is_active",
                    ]
                },
            ),
            (_("组织"), {"fields": ["department", "manager", "title"]}),
            (_("资料"), {"fields": ["email", "phone", "avatar", "signature"]}),
            (_("管理控制台"), {"fields": ["console_user"]}),
            (_("记录"), {"fields": ["created_at", "updated_at", "last_seen_at", "web_sign_in"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        fixed = (
            "employee_id",
            "is_ai_agent",
            "created_at",
            "updated_at",
            "last_seen_at",
            "web_sign_in",
        )
        # Whoever links a console account lets it act as this employee: account administration.
        if not request.user.has_perm("auth.change_user"):
            return (*fixed, "console_user")
        return fixed

    @admin.display(description=gettext_lazy("网页登录"))
    def web_sign_in(self, obj):
        account = WebAccount.objects.filter(employee=obj).first()
        if account is None:
            return _("未设置网页登录密码（在员工列表中选择“设置/重置网页登录密码”）")
        if account.must_change_password:
            return _("已设置初始密码，待员工首次登录时修改")
        active = obj.web_sessions.filter(ended_at__isnull=True).count()
        return _("已设置（%(count)d 个网页会话）") % {"count": active}

    def get_inlines(self, request, obj):
        return [AgentProfileInline] if obj is None or obj.is_ai_agent else []

    def has_delete_permission(self, request, obj=None):
        return False  # employees are deactivated, never deleted (their messages stay)

    def get_search_results(self, request, queryset, search_term):
        queryset, duplicates = super().get_search_results(request, queryset, search_term)
        # Autocomplete for manager / agent owner: active people only.
        field = request.GET.get("field_name")
        if field in ("manager", "owner"):
            queryset = queryset.filter(is_active=True)
        if field == "owner":
            queryset = queryset.filter(is_ai_agent=False)
        return queryset, duplicates

    # One service call per save, with the agent inline's settings: save_model defers to
    # save_related, which sees both the form and the inline formsets.

    def save_model(self, request, obj, form, change):
        pass

    def save_related(self, request, form, formsets, change):
        obj, data = form.instance, form.cleaned_data
        agent = self._agent_settings(formsets, only_changed=change)
        if not change:
            issued = services.employee_create(
                actor=None,
                name=data["name"],
                id_slug=data.get("id_slug") or None,
                is_ai_agent=data.get("is_ai_agent", False),
                is_org_admin=data.get("is_org_admin", False),
                department_id=_public_value(data.get("department")),
                manager_id=_public_value(data.get("manager")),
                **{f: data.get(f, "") for f in ("title", "email", "phone", "avatar", "signature")},
                agent=agent if data.get("is_ai_agent") else None,
            )
            request._mchat_issued = [issued]
            saved = issued.employee
        else:
            updates = {
                _PUBLIC.get(field, field): _public_value(data[field])
                for field in form.changed_data
                if field in _CHANGE_FIELDS
            }
            if agent:
                updates["agent"] = agent
            if updates:
                services.employee_update(actor=None, employee_id=obj.employee_id, updates=updates)
            if "console_user" in form.changed_data:
                services.employee_console_user_set(employee_id=obj.employee_id, user=data.get("console_user"))
            saved = Employee.objects.get(pk=obj.pk)
        instance_adopt(obj, saved)
        for formset in formsets:
            # Saved by the service above, not by formset.save(); the change message reads these.
            formset.new_objects, formset.changed_objects, formset.deleted_objects = (
                [],
                [],
                [],
            )

    @staticmethod
    def _agent_settings(formsets, *, only_changed: bool) -> dict | None:
        for formset in formsets:
            if formset.model is not AgentProfile:
                continue
            for inline in formset.forms:
                if not inline.has_changed() and (only_changed or not inline.cleaned_data):
                    continue
                fields = inline.changed_data if only_changed else list(inline.cleaned_data)
                settings = {
                    name: _public_value(inline.cleaned_data.get(name))
                    for name in fields
                    if name in services.AGENT_FIELDS
                }
                return settings or None
        return None

    def response_add(self, request, obj, post_url_continue=None):
        issued = getattr(request, "_mchat_issued", None)
        if issued:
            return self._credentials_page(request, issued, created=True)
        return super().response_add(request, obj, post_url_continue)

    # --- actions -----------------------------------------------------------------------------

    def _credentials_page(self, request, issued, *, created: bool) -> TemplateResponse:
        """The new passwords, shown once: never stored, never cached by the browser."""
        response = TemplateResponse(
            request,
            "admin/org/employee/credentials.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": _("员工已创建") if created else _("MQTT 凭证已重置"),
                "created": created,
                "credentials": [
                    {"employee": item.employee, "connection": item.mqtt_connection()} for item in issued
                ],
            },
        )
        add_never_cache_headers(response)
        return response

    @admin.action(description=gettext_lazy("重置 MQTT 凭证（新密码仅显示一次）"))
    def reset_credentials(self, request, queryset):
        if not request.user.has_perm("org.reset_credentials"):
            raise DjangoPermissionDenied
        if request.POST.get("post") != "yes":
            return TemplateResponse(
                request,
                "admin/org/employee/reset_credentials_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "title": _("确认重置 MQTT 凭证"),
                    "employees": list(queryset),
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        with transaction.atomic():
            issued = [
                services.employee_credential_reset(actor=None, employee=employee)
                for employee in Employee.objects.filter(pk__in=queryset.values("pk")).order_by("employee_id")
            ]
        return self._credentials_page(request, issued, created=False)

    @admin.action(description=gettext_lazy("设置/重置网页登录密码（初始密码仅显示一次）"))
    def reset_web_password(self, request, queryset):
        if not request.user.has_perm("org.reset_credentials"):
            raise DjangoPermissionDenied
        employees = list(queryset.filter(is_active=True, is_ai_agent=False).order_by("employee_id"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("网页登录密码"),
            "employees": employees,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        if not employees:
            self.message_user(request, _("所选员工中没有在职的人类员工"), level=messages.WARNING)
            return None
        if request.POST.get("post") == "yes":
            with transaction.atomic():
                context["passwords"] = [
                    {"employee": employee, "password": web_auth.web_password_set(employee=employee)}
                    for employee in employees
                ]
        response = TemplateResponse(request, "admin/org/employee/web_passwords.html", context)
        add_never_cache_headers(response)
        return response

    def _set_active(self, request, queryset, active: bool) -> None:
        changed, refused = 0, []
        for employee_id in queryset.values_list("employee_id", flat=True):
            try:
                change = services.employee_update(
                    actor=None, employee_id=employee_id, updates={"is_active": active}
                )
                changed += bool(change.fields)
            except MChatError as exc:
                refused.append(f"{employee_id}: {exc.message}")
        text = _("已启用 %(count)d 名员工") if active else _("已停用 %(count)d 名员工")
        self.message_user(request, text % {"count": changed})
        for line in refused:
            self.message_user(request, line, level=messages.ERROR)

    @admin.action(description=gettext_lazy("停用所选员工（断开其连接）"), permissions=["change"])
    def deactivate(self, request, queryset):
        self._set_active(request, queryset, False)

    @admin.action(description=gettext_lazy("重新启用所选员工"), permissions=["change"])
    def reactivate(self, request, queryset):
        self._set_active(request, queryset, True)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.has_perm("org.reset_credentials"):
            actions.pop("reset_credentials", None)
            actions.pop("reset_web_password", None)
        return actions

    def process_import(self, request, **kwargs):
        response = super().process_import(request, **kwargs)
        self.message_user(
            request,
            _("新导入的员工尚无可用的登录密码：请选中他们并执行“重置 MQTT 凭证”。"),
            level=messages.INFO,
        )
        return response
