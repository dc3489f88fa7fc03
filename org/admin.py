"""The HR console: departments (drag-and-drop tree), employees, agents, system notices.

Thin by design: every write goes through org.services (admin users are trusted callers,
actor=None, after Django's own permission checks), so ids, the tree lock, the org version,
profile events and broker credentials behave exactly as over MQTT. A service refusal is shown
as a form error on the re-rendered form.
"""

from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import transaction
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export.admin import ImportExportMixin
from mptt.admin import DraggableMPTTAdmin, TreeRelatedFieldListFilter

from mchat.errors import MChatError
from org import services
from org.models import AgentProfile, Department, Employee, SystemNotice
from org.resources import DepartmentResource, EmployeeResource
from org.serializers import ID_SLUG_PATTERN


def _adopt(obj, saved) -> None:
    """The admin keeps using the object it built from the form: give it what was saved."""
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db
    obj._state.fields_cache = {}


class ServiceErrorsAsFormErrors:
    """A service refusal (MChatError) during save: the transaction is rolled back and the form
    is shown again with the posted data and the refusal as its error."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except MChatError as exc:
            request._mchat_refusal = str(exc.message)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        refusal = getattr(request, "_mchat_refusal", None)
        if refusal is None:
            return form_class

        class Refused(form_class):
            def clean(self):
                cleaned = super().clean()
                raise forms.ValidationError(refusal)
                return cleaned  # pragma: no cover

        return Refused

    def importable(self, request) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def has_import_permission(self, request):
        return self.importable(request)


# --- departments -------------------------------------------------------------------------------


class DepartmentForm(forms.ModelForm):
    department_id = forms.RegexField(
        regex=r"^[a-z][a-z0-9_]{2,63}$",
        required=False,
        label=gettext_lazy("部门编号"),
        help_text=gettext_lazy("留空则按名称拼音生成，如 dept_xiaoshoubu；创建后不可修改。"),
    )

    class Meta:
        model = Department
        fields = ["name", "department_id", "parent", "sort_order"]


@admin.register(Department)
class DepartmentAdmin(ServiceErrorsAsFormErrors, ImportExportMixin, DraggableMPTTAdmin):
    form = DepartmentForm
    resource_classes = [DepartmentResource]
    list_display = (
        "tree_actions",
        "indented_title",
        "department_id",
        "sort_order",
        "member_count",
    )
    list_display_links = ("indented_title",)
    search_fields = ("name", "department_id")
    expand_tree_by_default = True
    actions = None  # bulk delete would skip the move_to rule; delete one at a time

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("employees"))

    @admin.display(description=gettext_lazy("名称"))
    def indented_title(self, item):
        return super().indented_title(item)

    @admin.display(description=gettext_lazy("人数"))
    def member_count(self, department):
        return getattr(department, "_members", None)

    def get_readonly_fields(self, request, obj=None):
        return ("department_id",) if obj else ()

    def get_fields(self, request, obj=None):
        return ["name", "department_id", "parent", "sort_order"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        parent_id = data["parent"].department_id if data.get("parent") else None
        if not change:
            saved = services.department_create(
                actor=None,
                name=data["name"],
                parent_id=parent_id,
                sort_order=data.get("sort_order") or 0,
                department_id=data.get("department_id") or None,
            )
        else:
            names = {"name": "name", "parent": "parent_id", "sort_order": "sort_order"}
            updates = {
                names[field]: (parent_id if field == "parent" else data[field])
                for field in form.changed_data
                if field in names
            }
            saved = (
                services.department_update(actor=None, department_id=obj.department_id, updates=updates)
                if updates
                else Department.objects.get(pk=obj.pk)
            )
        _adopt(obj, saved)

    def _move_node(self, request):
        """Drag-and-drop, through the service (lock, sort_order, version)."""
        queryset = self.get_queryset(request)
        try:
            cut = queryset.get(pk=request.POST.get("cut_item"))
            pasted_on = queryset.get(pk=request.POST.get("pasted_on"))
        except (Department.DoesNotExist, TypeError, ValueError):
            self.message_user(request, _("部门已不存在，请刷新后重试"), level=messages.ERROR)
            return HttpResponse("FAIL, invalid objects.")
        if not self.has_change_permission(request, cut):
            self.message_user(request, _("无权执行该操作"), level=messages.ERROR)
            return HttpResponse("FAIL, no permission.")
        try:
            moved = services.department_move(
                actor=None,
                department_id=cut.department_id,
                target_id=pasted_on.department_id,
                position=request.POST.get("position", ""),
            )
        except MChatError as exc:
            self.message_user(request, str(exc.message), level=messages.ERROR)
            return HttpResponse("FAIL, invalid move.")
        self.log_change(request, moved, [{"changed": {"fields": ["parent", "sort_order"]}}])
        self.message_user(request, _("已移动部门：%(name)s") % {"name": moved.name})
        return HttpResponse("OK, moved.")

    # Deletion: members and sub-departments are not "protected objects" here but something
    # to move; the confirmation page asks where to (move_to).

    def get_deleted_objects(self, objs, request):
        return [str(obj) for obj in objs], {}, set(), []

    def delete_view(self, request, object_id, extra_context=None):
        department = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if department is not None:
            subtree = department.get_descendants(include_self=True).values("pk")
            context.update(
                member_count=department.employees.count(),
                child_count=department.get_children().count(),
                move_to_choices=Department.objects.exclude(pk__in=subtree).order_by("tree_id", "lft"),
            )
        try:
            return super().delete_view(request, object_id, context)
        except MChatError as exc:
            self.message_user(request, str(exc.message), level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj):
        services.department_delete(
            actor=None,
            department_id=obj.department_id,
            move_to=request.POST.get("move_to") or None,
        )


# --- employees and agents ----------------------------------------------------------------------

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
    actions = ("reset_credentials", "deactivate", "reactivate")

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
            (_("记录"), {"fields": ["created_at", "updated_at", "last_seen_at"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (
            "employee_id",
            "is_ai_agent",
            "created_at",
            "updated_at",
            "last_seen_at",
        )

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
            saved = Employee.objects.get(pk=obj.pk)
        _adopt(obj, saved)
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
        return actions

    def process_import(self, request, **kwargs):
        response = super().process_import(request, **kwargs)
        self.message_user(
            request,
            _("新导入的员工尚无可用的登录密码：请选中他们并执行“重置 MQTT 凭证”。"),
            level=messages.INFO,
        )
        return response


# --- system notices ----------------------------------------------------------------------------


class SystemNoticeForm(forms.ModelForm):
    class Meta:
        model = SystemNotice
        fields = ["title", "text"]
        widgets = {"text": forms.Textarea(attrs={"rows": 6})}


@admin.register(SystemNotice)
class SystemNoticeAdmin(ServiceErrorsAsFormErrors, admin.ModelAdmin):
    """Adding a notice broadcasts it to every employee (mchat/system/notify); sent notices
    are history and cannot be edited."""

    form = SystemNoticeForm
    list_display = ("title", "notify_id", "sent_by", "created_at")
    search_fields = ("title", "text")
    readonly_fields = ("notify_id", "title", "text", "sent_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        saved = services.system_notice_broadcast(
            actor=None,
            title=form.cleaned_data["title"],
            body=form.cleaned_data["text"],
            sent_by=request.user.get_username(),
        )
        _adopt(obj, saved)
        self.message_user(request, _("系统通知已发布给全体员工"))
