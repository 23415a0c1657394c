"""Create the demo chat models (and, only with --user, a demo login); safe to run again."""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from chatmodel_app import services
from chatmodel_app.models import ChatModel

DEMO_MODELS = {
    "simple_assistant": "A general assistant: the seed documentation's examples use it.",
    "say_hello_bot": "Greets people.",
}
SYSTEM_PROMPT = "You are a helpful assistant."


class Command(BaseCommand):
    help = "Create published demo chat models simple_assistant and say_hello_bot (offline model by default)."

    def add_arguments(self, parser):
        parser.add_argument("--model", help="LiteLLM model string (default: CHATMODEL_DEMO_MODEL or offline/demo).")
        parser.add_argument(
            "--user",
            help="Also create this superuser login, with the name as its password: for a local demo only "
            "(check --deploy warns about it). Without it, no account is created.",
        )
        parser.add_argument(
            "--no-user", action="store_true", help="Do not create a login (the default; kept for scripts)."
        )

    @transaction.atomic
    def handle(self, *args, **options):
        model = (
            options["model"]
            or os.environ.get("CHATMODEL_DEMO_MODEL")
            or getattr(settings, "CHATMODEL_DEMO_MODEL", None)
            or "offline/demo"
        )
        for name, description in DEMO_MODELS.items():
            chat_model, _ = ChatModel.objects.get_or_create(name=name, defaults={"description": description})
            if not chat_model.versions.filter(is_published=True).exists():
                version = services.version_create(
                    chat_model=chat_model, system_prompt=SYSTEM_PROMPT, model=model, memo="Created by chatmodel_demo."
                )
                # Published through the publishing service, so the PublishRecord says who (nobody: a command) and when.
                services.version_publish(version=version)
                self.stdout.write(f"Created {name} v{version.number} on {model}.")
            else:
                self.stdout.write(f"{name} already has a published version.")
        if options["user"] and not options["no_user"]:
            username = options["user"]
            User = get_user_model()
            user, created = User.objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": True}
            )
            if created:
                user.set_password(username)
                user.save()
            self.stdout.write(f"Log in at /admin/ as {username} / {username}.")
