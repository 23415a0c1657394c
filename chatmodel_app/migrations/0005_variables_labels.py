"""Prompt variables and labels with rollback (issue 18, parts 4 and 5).

Today's published versions and ratios are the built-in label ``production`` as they are (``Version.is_published``
and ``ratio`` stay its storage), so nothing served changes. Past publish records become ``production`` moves,
and each learns the set it replaced (``previous``), replayed from the records, so the last publish made before
this migration can be rolled back too.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# Records of one publish are written together; records further apart, by another user, or touching a version
# the publish already touched are separate publishes.
_SAME_PUBLISH_SECONDS = 1.0


def previous_sets_from_history(apps, schema_editor):
    """Replay each chat model's publish records, oldest first, and store on each the set its publish replaced."""
    PublishRecord = apps.get_model("chatmodel_app", "PublishRecord")
    Version = apps.get_model("chatmodel_app", "Version")
    records = PublishRecord.objects.select_related("version").order_by("version__chat_model_id", "created_at", "pk")
    by_chat_model: dict = {}
    for record in records.iterator():
        by_chat_model.setdefault(record.version.chat_model_id, []).append(record)
    for chat_model_id, rows in by_chat_model.items():
        live: dict = {}
        groups: list = []
        for record in rows:
            last = groups[-1][-1] if groups else None
            # One publish touches a version once: a version seen again starts the next publish.
            same = (
                last is not None
                and last.user_id == record.user_id
                and abs((record.created_at - last.created_at).total_seconds()) < _SAME_PUBLISH_SECONDS
                and record.version_id not in {r.version_id for r in groups[-1]}
            )
            if same:
                groups[-1].append(record)
            else:
                groups.append([record])
        replayed: list = []
        for group in groups:
            before = dict(live)
            for record in group:
                key = str(record.version.number)
                if record.action == "publish":
                    live[key] = record.ratio if record.ratio is not None else 1.0
                else:
                    live.pop(key, None)
            replayed.append((group, before))
        published = Version.objects.filter(chat_model_id=chat_model_id, is_published=True)
        actual = {str(number): ratio for number, ratio in published.values_list("number", "ratio")}
        for index, (group, before) in enumerate(replayed):
            # A history that does not end where the versions are (someone published outside the admin) is not
            # trusted for the newest publish: its rollback is refused rather than guessed.
            known = index < len(replayed) - 1 or live == actual
            for record in group:
                record.previous = before if known else None
        PublishRecord.objects.bulk_update([r for group, _ in replayed for r in group], ["previous"])


class Migration(migrations.Migration):
    dependencies = [
        ("chatmodel_app", "0004_conversations"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="publishrecord",
            name="label",
            field=models.CharField(default="production", max_length=50),
        ),
        migrations.AddField(
            model_name="publishrecord",
            name="previous",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="publishrecord",
            name="rollback",
            field=models.BooleanField(default=False, help_text="Made by a rollback to the label's previous set."),
        ),
        migrations.AddField(
            model_name="session",
            name="variables",
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.AddField(
            model_name="version",
            name="variables",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Variables the system prompt uses as {{ name }}: name, default, required.",
            ),
        ),
        migrations.CreateModel(
            name="Label",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50)),
                ("ratios", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "chat_model",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="labels",
                        to="chatmodel_app.chatmodel",
                    ),
                ),
                (
                    "updated_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="chatmodel_labels",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["chat_model", "name"],
                "constraints": [
                    models.UniqueConstraint(fields=("chat_model", "name"), name="chatmodel_label_name_uniq")
                ],
            },
        ),
        migrations.RunPython(previous_sets_from_history, migrations.RunPython.noop, elidable=True),
    ]
