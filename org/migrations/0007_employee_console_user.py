import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("org", "0006_web_session_devices_sso"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="employee",
            name="console_user",
            field=models.OneToOneField(
                blank=True,
                help_text="该员工登录管理控制台所用的账号：在控制台中解散群组、撤回消息、发布通知等操作，审计日志和通知中都记为该员工。",
                limit_choices_to={"is_staff": True},
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="mchat_employee",
                to=settings.AUTH_USER_MODEL,
                verbose_name="控制台账号",
            ),
        ),
    ]
