from django.core.management.base import BaseCommand

from bridge import acl


class Command(BaseCommand):
    help = "Render the broker's password, ACL and group files from the database and reload it."

    def handle(self, *args, **options):
        result = acl.sync()
        changed = ", ".join(result.changed) or "nothing"
        self.stdout.write(f"changed: {changed}; broker reloaded: {result.reloaded}")
