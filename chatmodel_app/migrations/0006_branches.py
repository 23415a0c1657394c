from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("chatmodel_app", "0005_variables_labels")]

    # Existing sessions become single-branch histories: every message on branch 0, no branch records.
    operations: list = [
        migrations.AddField(
            model_name="session",
            name="branch",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="session",
            name="branches",
            field=models.JSONField(blank=True, default=list, editable=False),
        ),
        migrations.AddField(
            model_name="message",
            name="branch",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["session", "branch", "seq"], name="chatmodel_message_branch_idx"),
        ),
    ]
