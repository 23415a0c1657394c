"""Versions and publishing.

The admin and the export/import commands only translate; the rules live here: a version
that has served a session never changes (editing makes a new one), every publish and
unpublish is recorded, and A/B ratios are checked before anything is written.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import IntegrityError, transaction

from ..exceptions import ChatModelError, InvalidParams
from ..models import ChatModel, PublishRecord, Session, Version
from ..validation import (
    PRODUCTION,
    VERSION_FIELDS,
    check_truncation,
    placeholders_check,
    ratios_clean,
    version_fields_clean,
)


def _actor(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None


def version_in_use(*, version: Version) -> bool:
    """Whether the version has served a session, and so can no longer change."""
    return Session.objects.filter(version_id=version.pk).exists()


def version_create(*, chat_model: ChatModel, created_by: Any = None, **fields: Any) -> Version:
    """Add the next-numbered version to a chat model, as a draft (not published); the one way to make one.

    ``fields`` are any of ``VERSION_FIELDS`` (``model`` is required), validated as the admin does.
    Publish it with ``version_publish`` or ``versions_publish``.
    """
    clean = version_fields_clean(fields)
    if "model" not in clean:
        raise InvalidParams("model is required: a LiteLLM model string such as 'gpt-4o-mini' or 'offline/demo'.")
    check_truncation(clean.get("truncation", Version.Truncation.AUTO), clean.get("truncation_last_messages"))
    placeholders_check(clean.get("system_prompt", ""), clean.get("variables", []))
    for _attempt in range(5):
        last = Version.objects.filter(chat_model=chat_model).order_by("-number").values_list("number", flat=True)
        try:
            with transaction.atomic():
                return Version.objects.create(
                    chat_model=chat_model, number=(last.first() or 0) + 1, created_by=_actor(created_by), **clean
                )
        except IntegrityError:
            continue  # another process took that number
    raise ChatModelError("Could not number the new version: too many concurrent creations.")


def _in_use_error(version: Version) -> ChatModelError:
    return ChatModelError(
        f"{version} has served sessions, so it is read-only: those sessions must keep the prompt they were "
        "given. Save your change as a new version instead.",
        code="version_in_use",
    )


def version_update(*, version: Version, **fields: Any) -> Version:
    """Change a draft in place; raises ChatModelError (code ``version_in_use``) once it has served a session."""
    clean = version_fields_clean(fields)
    with transaction.atomic():
        # The row lock makes a session that pins this version wait for (or be seen by) the check.
        locked = Version.objects.select_for_update().select_related("chat_model").get(pk=version.pk)
        if version_in_use(version=locked):
            raise _in_use_error(locked)
        for key, value in clean.items():
            setattr(locked, key, value)
        check_truncation(locked.truncation, locked.truncation_last_messages)
        if "system_prompt" in clean or "variables" in clean:
            placeholders_check(locked.system_prompt, locked.variables or [])
        if clean:
            locked.save(update_fields=list(clean))
    return locked


def version_copy(*, version: Version, created_by: Any = None, **overrides: Any) -> Version:
    """Save any version (in use or not) as a new draft, with ``overrides`` applied to the copy."""
    fields = {name: copy.deepcopy(getattr(version, name)) for name in VERSION_FIELDS}
    fields["memo"] = f"Copy of v{version.number}" + (f": {version.memo}" if version.memo else ".")
    fields.update(overrides)
    return version_create(chat_model=version.chat_model, created_by=created_by, **fields)


def _lock_chat_model(chat_model_id: int) -> None:
    # Serialise publishes of one chat model, so two editors never both leave their choice live.
    list(ChatModel.objects.select_for_update().filter(pk=chat_model_id).values_list("pk", flat=True))


def _published_set(chat_model_id: int) -> dict[str, float]:
    """The production label's set as a record stores it: {"<number>": ratio}."""
    rows = Version.objects.filter(chat_model_id=chat_model_id, is_published=True).values_list("number", "ratio")
    return {str(number): ratio for number, ratio in rows}


def versions_chosen(*, chat_model: ChatModel, numbers: Iterable[int]) -> dict[int, Version]:
    """The chat model's versions with these numbers, by number; InvalidParams (on ``ratios``) naming any missing."""
    wanted = set(numbers)
    chosen = {v.number: v for v in Version.objects.filter(chat_model=chat_model, number__in=wanted)}
    missing = sorted(wanted - set(chosen))
    if missing:
        raise InvalidParams(f"{chat_model.name} has no version {', '.join(f'v{n}' for n in missing)}.", field="ratios")
    return chosen


def versions_publish(
    *, chat_model: ChatModel, ratios: Mapping[int, float], user: Any = None, rollback: bool = False
) -> list[PublishRecord]:
    """Make exactly these versions (number -> A/B ratio) the published ones; record every change.

    Versions of the chat model that are published but not named are unpublished. Ratios are
    weights: {2: 0.8, 3: 0.2} and {2: 80, 3: 20} serve v2 four times as often as v3. This moves the
    label ``production`` (services/labels.py); each record keeps the set it replaced, for a rollback.
    """
    clean = ratios_clean(ratios)
    actor = _actor(user)
    with transaction.atomic():
        _lock_chat_model(chat_model.pk)
        chosen = versions_chosen(chat_model=chat_model, numbers=clean)
        previous = _published_set(chat_model.pk)
        entry = {"user": actor, "label": PRODUCTION, "previous": previous, "rollback": rollback}
        records = []
        others = list(Version.objects.filter(chat_model=chat_model, is_published=True).exclude(number__in=clean))
        if others:
            Version.objects.filter(pk__in=[v.pk for v in others]).update(is_published=False)
            records += [PublishRecord(version=v, action=PublishRecord.Action.UNPUBLISH, **entry) for v in others]
        for number, ratio in sorted(clean.items()):
            version = chosen[number]
            if version.is_published and version.ratio == ratio:
                continue
            Version.objects.filter(pk=version.pk).update(is_published=True, ratio=ratio)
            records.append(PublishRecord(version=version, action=PublishRecord.Action.PUBLISH, ratio=ratio, **entry))
        PublishRecord.objects.bulk_create(records)
    return records


def version_publish(*, version: Version, user: Any = None) -> list[PublishRecord]:
    """Publish this version alone (ratio 1), unpublishing the chat model's others."""
    return versions_publish(chat_model=version.chat_model, ratios={version.number: 1.0}, user=user)


def version_unpublish(*, version: Version, user: Any = None) -> PublishRecord | None:
    """Stop serving this version; None when it was not published."""
    with transaction.atomic():
        _lock_chat_model(version.chat_model_id)
        previous = _published_set(version.chat_model_id)
        if not Version.objects.filter(pk=version.pk, is_published=True).update(is_published=False):
            return None
        return PublishRecord.objects.create(
            version=version, action=PublishRecord.Action.UNPUBLISH, user=_actor(user), previous=previous
        )
