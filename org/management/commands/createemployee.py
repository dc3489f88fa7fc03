import json

from django.core.management.base import BaseCommand, CommandError

from audit.context import source as audit_source
from mchat.errors import MChatError
from org import services, web_auth


class Command(BaseCommand):
    help = (
        "Create an employee and print its employee_id, mqtt_connection (spec 3.3) and, for a "
        "person, an initial web_password, once; passwords are not stored and cannot be shown again."
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
        if not agent:
            # An initial web password: the employee chooses its own at first sign-in.
            result["web_password"] = web_auth.web_password_set(employee=issued.employee)
        if json:
            self.stdout.write(_json_dumps(result))
            return
        self.stdout.write(f"employee_id: {result['employee_id']}")
        self.stdout.write("mqtt_connection (the password is shown only this once):")
        self.stdout.write(_json_dumps(result["mqtt_connection"]))
        if "web_password" in result:
            self.stdout.write(f"web_password (initial, shown only this once): {result['web_password']}")


def _json_dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
