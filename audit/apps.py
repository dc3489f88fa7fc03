from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = _("审计与保留")

    def ready(self) -> None:
        from audit import receivers

        receivers.connect()
