"""Read chat models and versions written by chatmodel_export; idempotent, all or nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chatmodel_app import services
from chatmodel_app.exceptions import ChatModelError

from .chatmodel_export import FORMATS, yaml_module


def loads(text: str, fmt: str | None) -> Any:
    """Parse JSON or YAML; without a format, JSON-looking text is JSON and the rest YAML."""
    if fmt is None:
        fmt = "json" if text.lstrip().startswith(("{", "[")) else "yaml"
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    yaml = yaml_module()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CommandError(f"Not valid YAML: {exc}") from None


class Command(BaseCommand):
    help = (
        "Import chat models and versions from a chatmodel_export file. Versions are matched by chat model and "
        "number; a version that has served sessions is never changed (the import stops and saves nothing)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The file to read, or - for standard input.")
        parser.add_argument("--format", choices=FORMATS, help="yaml or json (default: from the file's suffix).")
        parser.add_argument("--dry-run", action="store_true", help="Say what would change, and save nothing.")
        parser.add_argument(
            "--no-publish", action="store_true", help="Leave which versions are published (and their ratios) alone."
        )
        parser.add_argument("--user", help="Record publishes as made by this user (a username).")

    def handle(self, *args, **options):
        path = options["file"]
        if path == "-":
            text = sys.stdin.read()
            fmt = options["format"]
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
            suffix = Path(path).suffix.lower()
            fmt = options["format"] or {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
        user = None
        if options["user"]:
            model = get_user_model()
            user = model._default_manager.filter(**{model.USERNAME_FIELD: options["user"]}).first()
            if user is None:
                raise CommandError(f"No user is named {options['user']!r}.")
        try:
            report = services.chat_models_import(
                data=loads(text, fmt), user=user, publish=not options["no_publish"], dry_run=options["dry_run"]
            )
        except ChatModelError as exc:
            raise CommandError(f"{exc} Nothing was imported.") from None
        for label in report.chat_models_created:
            self.stdout.write(f"created chat model {label}")
        for verb, labels in (("created", report.created), ("updated", report.updated)):
            for label in labels:
                self.stdout.write(f"{verb} {label}")
        for line in report.published:
            self.stdout.write(f"published {line}")
        summary = (
            f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
            f"{len(report.published)} chat model(s) republished."
        )
        if options["dry_run"]:
            summary += " Dry run: nothing was saved."
        self.stdout.write(summary)
