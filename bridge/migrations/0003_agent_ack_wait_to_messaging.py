# AgentAckWait now belongs to messaging (messaging 0004 took over its table): the bridge app
# forgets the model; nothing happens to the database.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('bridge', '0002_agent_ack_wait'),
        ('messaging', '0004_agent_ack_wait_from_bridge'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='AgentAckWait')],
        ),
    ]
