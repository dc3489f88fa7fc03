#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mchat.settings")
    from django.core.management import execute_from_command_line

    from audit.context import process_default

    # What a command changes is audited as the command's unless something inside says otherwise
    # (a bridge request, a scheduled job): DRF's drf_create_token, `manage.py shell`.
    process_default("command")

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
