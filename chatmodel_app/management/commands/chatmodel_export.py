"""Write chat models with all their versions as YAML or JSON, for review in git and promotion between sites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chatmodel_app import services
from chatmodel_app.exceptions import ChatModelError

FORMATS = ("yaml", "json")


def yaml_module() -> Any:
    """PyYAML, or a CommandError that says how to get it."""
    try:
        import yaml
    except ImportError:
        raise CommandError("YAML needs PyYAML: pip install PyYAML, or use --format json.") from None
    return yaml


def format_for(path: str | None, given: str | None) -> str:
    """The format asked for, else the one the file name says, else YAML."""
    if given:
        return given
    suffix = Path(path).suffix.lower() if path and path != "-" else ""
    return "json" if suffix == ".json" else "yaml"


def dumps(data: dict[str, Any], fmt: str) -> str:
    """``data`` as YAML (multi-line prompts as literal blocks, so diffs read well) or JSON."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    yaml = yaml_module()
    from yaml import SafeDumper  # yaml_module has loaded it, or said how to install it

    class Dumper(SafeDumper):
        pass

    def text(dumper: Any, value: str) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120)


class Command(BaseCommand):
    help = "Export chat models (all, or those named) with every version as YAML or JSON."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="Chat model names (default: all).")
        parser.add_argument(
            "--format", choices=FORMATS, help="yaml or json (default: from --output's suffix, else yaml)."
        )
        parser.add_argument("-o", "--output", help="File to write (default: standard output).")

    def handle(self, *args, **options):
        fmt = format_for(options["output"], options["format"])
        try:
            data = services.chat_models_export(names=options["names"] or None)
        except ChatModelError as exc:
            raise CommandError(str(exc)) from None
        text = dumps(data, fmt)
        output = options["output"]
        if output and output != "-":
            Path(output).write_text(text, encoding="utf-8")
            versions = sum(len(c["versions"]) for c in data["chat_models"])
            self.stderr.write(f"Wrote {len(data['chat_models'])} chat models ({versions} versions) to {output}.")
        else:
            self.stdout.write(text, ending="")
