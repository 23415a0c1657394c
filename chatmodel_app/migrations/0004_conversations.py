"""Named conversations (title, archive, last activity) and feedback on replies (issue 18, parts 2 and 3)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def last_activity_from_updated_at(apps, schema_editor):
    """Existing sessions were last active when they last changed, not when this migration ran."""
    Session = apps.get_model("chatmodel_app", "Session")
    Session.objects.update(last_activity_at=models.F("updated_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("chatmodel_app", "0003_run_engine"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="archived_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="session",
            name="last_activity_at",
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.AddField(
            model_name="session",
            name="title",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="session",
            name="title_source",
            field=models.CharField(
                blank=True,
                choices=[("user", "set by the user"), ("auto", "generated"), ("pending", "being generated")],
                help_text="Who set the title: a title the user set is never replaced by a generated one.",
                max_length=10,
            ),
        ),
        migrations.RunPython(last_activity_from_updated_at, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["user", "-last_activity_at"], name="chatmodel_session_activity_idx"),
        ),
        migrations.CreateModel(
            name="Feedback",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("rating", models.SmallIntegerField(choices=[(1, "up"), (-1, "down")])),
                ("comment", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "message",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="feedback",
                        to="chatmodel_app.message",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="chatmodel_feedback",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="feedback",
                        to="chatmodel_app.version",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "feedback",
                "ordering": ["-updated_at"],
                "indexes": [models.Index(fields=["version", "-updated_at"], name="chatmodel_feedback_version_idx")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("rating__in", [1, -1])), name="chatmodel_feedback_rating_valid"
                    )
                ],
            },
        ),
    ]
