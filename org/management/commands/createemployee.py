import json

from django.core.management.base import BaseCommand, CommandError

from audit.context import source as audit_source
from mchat.errors import MChatError
from org import services


class Command(BaseCommand):
    help = (
        "Create an employee and print its employee_id and mqtt_connection (spec 3.3) once; "
        "the password is not stored and cannot be shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--org-admin", action="store_true")
        parser.add_argument("--agent", action="store_true", help="an AI agent employee")
        parser.add_argument("--department", help="department_id, e.g. dept_sales")
        parser.add_argument("--title", default="")
        parser.add_argument("--id-slug", help="readable part of the id: ai_{slug}_001")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    @audit_source("command")
    def handle(self, *args, name: str, org_admin: bool, agent: bool, json: bool, **options):
        try:
            issued = services.employee_create(
                actor=None,
                name=name,
                is_org_admin=org_admin,
                is_ai_agent=agent,
                department_id=options.get("department"),
                title=options.get("title") or "",
                id_slug=options.get("id_slug"),
            )
        except MChatError as exc:
            raise CommandError(str(exc.message)) from exc
        result = {
            "employee_id": issued.employee.employee_id,
            "name": issued.employee.name,
            "mqtt_connection": issued.mqtt_connection(),
        }
        if json:
            self.stdout.write(_json_dumps(result))
            return
        self.stdout.write(f"employee_id: {result['employee_id']}")
        self.stdout.write("mqtt_connection (the password is shown only this once):")
        self.stdout.write(_json_dumps(result["mqtt_connection"]))


def _json_dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
