"""Labels: named sets of a chat model's versions with A/B ratios, moved like a publish and rolled back in one step.

``production`` is the built-in label, the one "deploy" means: its set is the versions' ``is_published`` and
``ratio`` (so ``versions_publish`` moves it). Any other label (``staging``, ``canary``...) is a ``Label`` row.
``ChatModel(name, version="staging")`` and every door that takes a version spec resolve a label through
``selectors.version_resolve``.

Every move writes one ``PublishRecord`` per version it adds, re-weights or drops, each with the label and the
label's whole set just before the move (``previous``). A rollback moves the label back to that set, recorded
the same way (``rollback=True``), so rolling back twice undoes the rollback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Max

from ..exceptions import InvalidParams
from ..models import ChatModel, Label, PublishRecord, Version
from ..validation import PRODUCTION, label_name_clean, ratios_clean
from .versions import _actor, _lock_chat_model, versions_chosen, versions_publish


def _stored(ratios: Mapping[int, float]) -> dict[str, float]:
    """A set as records and labels store it: JSON keys are text."""
    return {str(number): float(ratio) for number, ratio in sorted(ratios.items())}


def label_move(
    *, chat_model: ChatModel, label: str, ratios: Mapping[Any, float], user: Any = None, rollback: bool = False
) -> list[PublishRecord]:
    """Point ``label`` at exactly these versions (number -> A/B ratio), creating it if new; record every change.

    ``production`` is a publish (``versions_publish``). Returns the records, none when nothing changed.
    """
    name = label_name_clean(label)
    clean = ratios_clean(ratios)
    if name == PRODUCTION:
        return versions_publish(chat_model=chat_model, ratios=clean, user=user, rollback=rollback)
    actor = _actor(user)
    with transaction.atomic():
        _lock_chat_model(chat_model.pk)
        chosen = versions_chosen(chat_model=chat_model, numbers=clean)
        row = Label.objects.filter(chat_model=chat_model, name=name).first()
        previous = dict(row.ratios) if row is not None else {}
        entry = {"user": actor, "label": name, "previous": previous, "rollback": rollback}
        dropped = [int(n) for n in previous if int(n) not in clean]
        records = [
            PublishRecord(version=v, action=PublishRecord.Action.UNPUBLISH, **entry)
            for v in Version.objects.filter(chat_model=chat_model, number__in=dropped).order_by("number")
        ]
        for number, ratio in sorted(clean.items()):
            if previous.get(str(number)) == ratio:
                continue
            records.append(
                PublishRecord(version=chosen[number], action=PublishRecord.Action.PUBLISH, ratio=ratio, **entry)
            )
        if not records:
            return []
        if row is None:
            Label.objects.create(chat_model=chat_model, name=name, ratios=_stored(clean), updated_by=actor)
        else:
            row.ratios, row.updated_by = _stored(clean), actor
            row.save(update_fields=["ratios", "updated_by", "updated_at"])
        PublishRecord.objects.bulk_create(records)
    return records


def label_delete(*, chat_model: ChatModel, label: str, user: Any = None) -> list[PublishRecord]:
    """Remove a label (not ``production``: unpublish its versions instead); recorded, so a rollback restores it."""
    name = label_name_clean(label)
    if name == PRODUCTION:
        raise InvalidParams(
            "The production label cannot be deleted: it is what 'deploy' serves. Publish other versions instead.",
            field="label",
        )
    with transaction.atomic():
        _lock_chat_model(chat_model.pk)
        row = Label.objects.filter(chat_model=chat_model, name=name).first()
        if row is None:
            raise InvalidParams(f"Chat model {chat_model.name} has no label {name!r}.", field="label")
        entry = {"user": _actor(user), "label": name, "previous": dict(row.ratios)}
        versions = Version.objects.filter(chat_model=chat_model, number__in=[int(n) for n in row.ratios])
        records = [
            PublishRecord(version=v, action=PublishRecord.Action.UNPUBLISH, **entry)
            for v in versions.order_by("number")
        ]
        row.delete()
        PublishRecord.objects.bulk_create(records)
    return records


def label_last_move(*, chat_model: ChatModel, label: str) -> PublishRecord | None:
    """The newest record of the label's newest move (its ``previous`` is what a rollback restores), or None.

    Newest by id: moves of a chat model are written one at a time (under its lock), so ids follow their order.
    """
    records = PublishRecord.objects.filter(version__chat_model=chat_model, label=label).select_related("user")
    return records.order_by("-pk").first()


def label_rollback_target(*, chat_model: ChatModel, label: str) -> dict[int, float]:
    """The set a rollback of ``label`` would restore (number -> ratio); InvalidParams when there is none."""
    name = label_name_clean(label)
    return _rollback_target(chat_model, name, label_last_move(chat_model=chat_model, label=name))


def _rollback_target(chat_model: ChatModel, name: str, last: PublishRecord | None) -> dict[int, float]:
    if last is None:
        raise InvalidParams(f"Label {name!r} of {chat_model.name} has never moved: there is nothing to roll back.")
    if last.previous is None:
        raise InvalidParams(
            f"The set label {name!r} of {chat_model.name} had before its last move is not known (it was changed "
            "outside the recorded history): move the label by hand."
        )
    if not last.previous:
        raise InvalidParams(
            f"Before its last move, label {name!r} of {chat_model.name} served nothing: a rollback would leave "
            + (
                "the chat model with no published version. Publish the version you want instead."
                if name == PRODUCTION
                else "it empty. Delete the label instead."
            )
        )
    return {int(number): float(ratio) for number, ratio in last.previous.items()}


def label_rollback(*, chat_model: ChatModel, label: str, user: Any = None) -> list[PublishRecord]:
    """Move ``label`` back to the set it had before its last move, in one step, recorded as a rollback."""
    with transaction.atomic():
        # Read under the lock, so two rollbacks at once undo one move each, not the same one twice.
        _lock_chat_model(chat_model.pk)
        target = label_rollback_target(chat_model=chat_model, label=label)
        return label_move(chat_model=chat_model, label=label, ratios=target, user=user, rollback=True)


# --- reads for the admin (kept beside the writes: the label rules are in one module) ----------------------


def label_sets(*, chat_model: ChatModel) -> dict[str, dict[int, float]]:
    """Every label of the chat model (``production`` first, then by name) -> its set (number -> ratio)."""
    published = Version.objects.filter(chat_model=chat_model, is_published=True).values_list("number", "ratio")
    sets: dict[str, dict[int, float]] = {PRODUCTION: dict(sorted(published))}
    for name, ratios in Label.objects.filter(chat_model=chat_model).order_by("name").values_list("name", "ratios"):
        sets[name] = _numbered(ratios)
    return sets


def _numbered(ratios: Mapping[str, Any]) -> dict[int, float]:
    return {int(n): float(r) for n, r in sorted(ratios.items(), key=lambda item: int(item[0]))}


def labels_overview(*, chat_model: ChatModel, published: list[Version] | None = None) -> list[dict[str, Any]]:
    """Per label: its versions with ratios and shares, its last move, and what a rollback would restore.

    A fixed number of queries, however many labels and versions: ``published`` (the chat model's published
    versions, when the caller has them), the labels, each label's newest record, and the labels' versions.
    """
    if published is None:
        published = list(Version.objects.filter(chat_model=chat_model, is_published=True).order_by("number"))
    sets: dict[str, dict[int, float]] = {PRODUCTION: {v.number: v.ratio for v in published}}
    for name, ratios in Label.objects.filter(chat_model=chat_model).order_by("name").values_list("name", "ratios"):
        sets[name] = _numbered(ratios)
    newest = PublishRecord.objects.filter(version__chat_model=chat_model).values("label").annotate(last=Max("pk"))
    last_moves = {r.label: r for r in PublishRecord.objects.filter(pk__in=newest.values("last")).select_related("user")}
    # A deleted label is listed while its history can bring it back (a rollback of the deletion).
    for name in sorted(set(last_moves) - set(sets)):
        sets[name] = {}
    versions = {v.number: v for v in published}
    wanted = {n for name, ratios in sets.items() if name != PRODUCTION for n in ratios} - set(versions)
    if wanted:
        versions.update({v.number: v for v in Version.objects.filter(chat_model=chat_model, number__in=wanted)})
    overview = []
    for name, ratios in sets.items():
        total = sum(ratios.values()) or 1.0
        try:
            target: dict[int, float] | None = _rollback_target(chat_model, name, last_moves.get(name))
            refused = ""
        except InvalidParams as exc:
            target, refused = None, str(exc)
        if not ratios and target is None and name != PRODUCTION:
            continue  # deleted for good: nothing to show, nothing to bring back
        overview.append(
            {
                "name": name,
                "entries": [
                    {"number": n, "version": versions.get(n), "ratio": r, "share": round(100 * r / total)}
                    for n, r in ratios.items()
                ],
                "last_move": last_moves.get(name),
                "rollback_to": target,
                "rollback_refused": refused,
            }
        )
    return overview


def version_labels(*, version: Version) -> list[str]:
    """The labels that serve ``version`` (``production`` when it is published), by name."""
    names = [PRODUCTION] if version.is_published else []
    rows = Label.objects.filter(chat_model_id=version.chat_model_id, ratios__has_key=str(version.number))
    return names + list(rows.order_by("name").values_list("name", flat=True))
