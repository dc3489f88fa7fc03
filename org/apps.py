from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrgConfig(AppConfig):
    name = "org"
    verbose_name = _("组织架构")

    def ready(self) -> None:
        # Sign-in events in the audit log. Axes' receivers are connected first (importing its
        # signals module connects them), so a failure's row can tell whether Axes refused it
        # unchecked during a lock-out (org.signin_audit).
        import axes.signals  # noqa: F401

        from org import signin_audit  # noqa: F401
        from org.signin_labels import label_sign_in_apps

        label_sign_in_apps()  # the console's Axes and OTP sections in Chinese
