# AgentAckWait moves from the bridge app to messaging (issue 14): the model's state is created
# here over the existing table (no data copied or lost), then the table takes messaging's name.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('bridge', '0002_agent_ack_wait'),
        ('messaging', '0003_files'),
        ('org', '0003_device_presence'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AgentAckWait',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('client_id', models.CharField(max_length=130)),
                        ('seq_id', models.CharField(max_length=128)),
                        ('seq', models.BigIntegerField()),
                        ('deadline', models.DateTimeField()),
                        ('response_data', models.JSONField()),
                        ('state', models.CharField(choices=[('pending', '等待确认'), ('acknowledged', '已确认'), ('expired', '已超时')], default='pending', max_length=16)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('resolved_at', models.DateTimeField(blank=True, null=True)),
                        ('agent', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='org.employee')),
                        ('conversation', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='messaging.conversation')),
                        ('message', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='messaging.message')),
                    ],
                    options={
                        'verbose_name': 'Agent 确认等待',
                        'verbose_name_plural': 'Agent 确认等待',
                        'db_table': 'bridge_agentackwait',
                        'indexes': [models.Index(condition=models.Q(('state', 'pending')), fields=['deadline'], name='agent_ack_wait_due'), models.Index(condition=models.Q(('state', 'pending')), fields=['conversation', 'agent', 'seq'], name='agent_ack_wait_open'), models.Index(fields=['resolved_at'], name='agent_ack_wait_resolved')],
                        'constraints': [models.UniqueConstraint(fields=('client_id', 'seq_id'), name='agent_ack_wait_once')],
                    },
                ),
            ],
        ),
        # A real rename (ALTER TABLE ... RENAME): rows, indexes and constraints stay.
        migrations.AlterModelTable(name='agentackwait', table=None),
    ]
