"""What every console page shares: a service refusal shown as a form error."""

from __future__ import annotations

from django import forms

from mchat.errors import MChatError


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
