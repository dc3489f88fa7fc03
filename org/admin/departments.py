"""The department tree in the console: drag-and-drop, import, deletion with a target."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export.admin import ImportExportMixin
from mptt.admin import DraggableMPTTAdmin

from mchat.db import instance_adopt
from mchat.errors import MChatError
from org import services
from org.admin.forms import ServiceErrorsAsFormErrors
from org.models import DEPARTMENT_ID_PATTERN, Department
from org.resources import DepartmentResource


class DepartmentForm(forms.ModelForm):
    department_id = forms.RegexField(
        regex=DEPARTMENT_ID_PATTERN,
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
        instance_adopt(obj, saved)

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
