"""Export and import of chat models with their versions (the chatmodel_export / chatmodel_import commands)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Prefetch

from ..exceptions import ChatModelError, ChatModelNotFound, InvalidParams
from ..models import ChatModel, Label, Version
from ..validation import (
    PRODUCTION,
    SLUG,
    VERSION_FIELDS,
    check_truncation,
    keys_check,
    label_name_clean,
    placeholders_check,
    ratios_clean,
    version_fields_clean,
)
from .feedback import feedback_export
from .labels import label_move
from .versions import version_in_use, version_update, versions_publish

EXPORT_FORMAT = "chatmodel_app.chat_models/1"


def chat_models_export(*, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Chat models (all, or those named) with every version, as plain data for YAML or JSON."""
    chat_models = ChatModel.objects.order_by("name").prefetch_related(
        Prefetch("versions", queryset=Version.objects.select_related("created_by").order_by("number")),
        Prefetch("labels", queryset=Label.objects.order_by("name")),
    )
    if names:
        chat_models = chat_models.filter(name__in=names)
        missing = sorted(set(names) - {c.name for c in chat_models})
        if missing:
            raise ChatModelNotFound(f"No chat model is named {', '.join(map(repr, missing))}.")
    # How users received each version (thumbs up/down, commented replies): read back, never imported.
    received = feedback_export(chat_model_ids=[c.pk for c in chat_models])
    return {
        "format": EXPORT_FORMAT,
        "chat_models": [
            {
                "name": chat_model.name,
                "description": chat_model.description,
                "versions": [_version_export(v) | received.get(v.pk, {}) for v in chat_model.versions.all()],
                **_labels_export(chat_model),
            }
            for chat_model in chat_models
        ],
    }


def _labels_export(chat_model: ChatModel) -> dict[str, Any]:
    """``{"labels": {"staging": {"3": 1.0}}}``: the labels other than production (that is ``is_published``)."""
    labels = {label.name: dict(label.ratios) for label in chat_model.labels.all() if label.ratios}
    return {"labels": labels} if labels else {}


def _version_export(version: Version) -> dict[str, Any]:
    data: dict[str, Any] = {"number": version.number, "uuid": str(version.uuid)}
    data.update({name: getattr(version, name) for name in VERSION_FIELDS})
    data.update(
        is_published=version.is_published,
        ratio=version.ratio,
        created_by=version.created_by.get_username() if version.created_by else None,
        created_at=version.created_at.isoformat() if version.created_at else None,
    )
    return data


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do), one ``"name vN"`` label a line."""

    chat_models_created: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.chat_models_created or self.created or self.updated or self.published)


class _DryRun(Exception):
    """Rolls back a dry-run import."""


_IMPORT_VERSION_KEYS = frozenset(
    # "feedback": how users received the version (exported for reading; an import ignores it).
    {*VERSION_FIELDS, "number", "uuid", "is_published", "ratio", "created_by", "created_at", "feedback"}
)


def chat_models_import(*, data: Any, user: Any = None, publish: bool = True, dry_run: bool = False) -> ImportReport:
    """Create or update chat models and versions from ``chat_models_export`` data, all or nothing.

    Idempotent: importing the same data twice changes nothing the second time. A version is
    matched by chat model and number; one that has served sessions is never changed (the
    import fails, naming it). With ``publish``, each chat model's published versions and
    ratios become those of the data (a chat model with none published there is left as it is), and so do
    the sets of the labels the data names (other labels are left as they are). An export from before prompt
    variables and labels imports as it always did.
    """
    entries = _import_entries(data)
    report = ImportReport()
    try:
        with transaction.atomic():
            users: dict[str, Any] = {}
            for entry in entries:
                _import_chat_model(entry, report, user=user, publish=publish, users=users)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


def _import_entries(data: Any) -> list[dict[str, Any]]:
    """Check the shape of import data, naming the place of the first problem."""
    if not isinstance(data, Mapping) or not isinstance(data.get("chat_models"), list):
        raise InvalidParams("The file must be an object with a 'chat_models' list (what chatmodel_export writes).")
    fmt = data.get("format", EXPORT_FORMAT)
    if fmt != EXPORT_FORMAT:
        raise InvalidParams(f"Unknown format {fmt!r}; this version of chatmodel_app reads {EXPORT_FORMAT!r}.")
    entries = []
    seen_names: set[str] = set()
    for i, raw in enumerate(data["chat_models"]):
        where = f"chat_models[{i}]"
        if not isinstance(raw, Mapping):
            raise InvalidParams(f"{where} must be an object with 'name' and 'versions'.")
        keys_check(raw, frozenset({"name", "description", "versions", "labels"}), where, InvalidParams)
        name = raw.get("name")
        if not isinstance(name, str) or not SLUG.match(name) or len(name) > 100:
            raise InvalidParams(f"{where}.name must be a slug (letters, digits, '_' or '-'); got {name!r}.")
        if name in seen_names:
            raise InvalidParams(f"{where}: chat model {name!r} appears twice.")
        seen_names.add(name)
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidParams(f"{where}.description must be text.")
        versions = raw.get("versions", [])
        if not isinstance(versions, list):
            raise InvalidParams(f"{where}.versions must be a list.")
        clean_versions = []
        numbers: set[int] = set()
        for j, item in enumerate(versions):
            clean_versions.append(_import_version(item, f"{where}.versions[{j}] ({name})", numbers))
        labels = _import_labels(raw.get("labels"), f"{where}.labels ({name})")
        entries.append({"name": name, "description": description, "versions": clean_versions, "labels": labels})
    return entries


def _import_version(item: Any, where: str, numbers: set[int]) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise InvalidParams(f"{where} must be an object.")
    keys_check(item, _IMPORT_VERSION_KEYS, where, InvalidParams)
    number = item.get("number")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidParams(f"{where}.number must be a positive whole number; got {number!r}.")
    if number in numbers:
        raise InvalidParams(f"{where}: version number {number} appears twice.")
    numbers.add(number)
    try:
        fields = version_fields_clean({k: item[k] for k in VERSION_FIELDS if k in item})
    except InvalidParams as exc:
        raise InvalidParams(f"{where}: {exc}") from None
    if "model" not in fields:
        raise InvalidParams(f"{where}.model is required.")
    check_truncation(fields.get("truncation", "auto"), fields.get("truncation_last_messages"))
    if "variables" in item:
        # An export from before prompt variables has none: its prompt's {{ ... }} text stays as written.
        try:
            placeholders_check(fields.get("system_prompt", ""), fields["variables"])
        except InvalidParams as exc:
            raise InvalidParams(f"{where}: {exc}") from None
    version_uuid = None
    if item.get("uuid") is not None:
        try:
            version_uuid = uuid.UUID(str(item["uuid"]))
        except ValueError:
            raise InvalidParams(f"{where}.uuid is not a uuid: {item['uuid']!r}.") from None
    published = item.get("is_published", False)
    if not isinstance(published, bool):
        raise InvalidParams(f"{where}.is_published must be true or false.")
    ratio = item.get("ratio", 1.0)
    if published:
        ratio = ratios_clean({number: ratio})[number]
    created_by = item.get("created_by")
    if created_by is not None and not isinstance(created_by, str):
        raise InvalidParams(f"{where}.created_by must be a username or null.")
    return {
        "number": number,
        "uuid": version_uuid,
        "fields": fields,
        "is_published": published,
        "ratio": ratio,
        "created_by": created_by,
    }


def _import_labels(raw: Any, where: str) -> dict[str, dict[int, float]]:
    """A chat model's labels in import data: name -> {version number: A/B ratio} (production is is_published)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidParams(f"{where} must be an object of label names and their sets, e.g. {{'staging': {{'2': 1}}}}.")
    labels = {}
    for name, ratios in raw.items():
        try:
            clean = label_name_clean(name)
            if clean == PRODUCTION:
                raise InvalidParams("production is the versions' is_published and ratio, not a label entry.")
            if not isinstance(ratios, Mapping):
                raise InvalidParams("its versions must be an object of version numbers and A/B ratios.")
            labels[clean] = ratios_clean(ratios)
        except InvalidParams as exc:
            raise InvalidParams(f"{where}.{name}: {exc}") from None
    return labels


def _import_user(username: str | None, users: dict[str, Any]) -> Any:
    if not username:
        return None
    if username not in users:
        from django.contrib.auth import get_user_model

        model = get_user_model()
        users[username] = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    return users[username]


def _import_chat_model(
    entry: dict[str, Any], report: ImportReport, *, user: Any, publish: bool, users: dict[str, Any]
) -> None:
    name = entry["name"]
    chat_model, created = ChatModel.objects.get_or_create(
        name=name, defaults={"description": entry["description"] or ""}
    )
    if created:
        report.chat_models_created.append(name)
    elif entry["description"] is not None and entry["description"] != chat_model.description:
        chat_model.description = entry["description"]
        chat_model.save(update_fields=["description", "updated_at"])
    numbers = [v["number"] for v in entry["versions"]]
    existing = {v.number: v for v in Version.objects.filter(chat_model=chat_model, number__in=numbers)}
    for item in sorted(entry["versions"], key=lambda v: v["number"]):
        label = f"{name} v{item['number']}"
        current = existing.get(item["number"])
        fields = item["fields"]
        if current is None:
            version_uuid = item["uuid"] or uuid.uuid4()
            other = Version.objects.filter(uuid=version_uuid).select_related("chat_model").first()
            if other is not None:
                raise InvalidParams(f"{label}: its uuid {version_uuid} already belongs to {other} here.")
            try:
                with transaction.atomic():
                    Version.objects.create(
                        chat_model=chat_model,
                        number=item["number"],
                        uuid=version_uuid,
                        created_by=_import_user(item["created_by"], users),
                        **fields,
                    )
            except IntegrityError:
                raise ChatModelError(f"{label} was created by someone else during the import; run it again.") from None
            report.created.append(label)
            continue
        changed = sorted(k for k, v in fields.items() if getattr(current, k) != v)
        if not changed:
            report.unchanged.append(label)
            continue
        if version_in_use(version=current):
            raise ChatModelError(
                f"{label} has served sessions, so the import will not change it (it differs in: "
                f"{', '.join(changed)}). Give the change a new version number.",
                code="version_in_use",
            )
        version_update(version=current, **{k: fields[k] for k in changed})
        report.updated.append(label)
    wanted = {v["number"]: v["ratio"] for v in entry["versions"] if v["is_published"]}
    if publish and wanted:
        live = dict(Version.objects.filter(chat_model=chat_model, is_published=True).values_list("number", "ratio"))
        if live != wanted:
            versions_publish(chat_model=chat_model, ratios=wanted, user=user)
            report.published.append(f"{name}: " + ", ".join(f"v{n} ({r:g})" for n, r in sorted(wanted.items())))
    if publish:
        for label, ratios in sorted(entry.get("labels", {}).items()):
            if label_move(chat_model=chat_model, label=label, ratios=ratios, user=user):
                shown = ", ".join(f"v{n} ({r:g})" for n, r in sorted(ratios.items()))
                report.published.append(f"{name}@{label}: {shown}")
