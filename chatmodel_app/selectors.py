"""Reads: chat models, versions, sessions, configs and message pages."""

from __future__ import annotations

import random
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet

from .exceptions import ChatModelNotFound, InvalidParams, SessionNotFound, SessionOfOtherChatModel, VersionNotFound
from .llm.messages import to_log
from .models import ChatModel, Message, Session, Version
from .types import ChatModelConfig
from .validation import PRODUCTION, is_label_name, text_check

VersionSpec = str | int | None


def chat_model_get(*, name: str) -> ChatModel:
    """The chat model called ``name``, or ChatModelNotFound."""
    # A NUL or a lone surrogate cannot even be looked up on PostgreSQL: refused here, for every door.
    if isinstance(name, str):
        text_check(name, "name", InvalidParams)
    try:
        return ChatModel.objects.get(name=name)
    except ChatModel.DoesNotExist:
        raise ChatModelNotFound(f"No chat model is named {name!r}.") from None


def version_resolve(*, chat_model: ChatModel, spec: VersionSpec = "deploy") -> Version:
    """The version ``spec`` names: "deploy" (a published one, by A/B ratio), "latest", a number, or a label.

    A label (``"staging"``) is one of its versions by A/B ratio; ``"production"`` is what "deploy" means.
    """
    if spec is None or spec == "deploy" or spec == PRODUCTION:
        published = list(Version.objects.filter(chat_model=chat_model, is_published=True).order_by("number"))
        if not published:
            raise VersionNotFound(
                f"Chat model {chat_model.name!r} has no published version: publish one in the admin, "
                "or ask for version='latest' or a version number."
            )
        return _weighted_choice(published, [v.ratio for v in published])
    if spec == "latest":
        version = Version.objects.filter(chat_model=chat_model).order_by("-number").first()
        if version is None:
            raise VersionNotFound(f"Chat model {chat_model.name!r} has no versions yet.")
        return version
    if is_label_name(spec):
        return _label_resolve(chat_model, str(spec))
    try:
        number = int(spec)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VersionNotFound(
            f"version must be 'deploy', 'latest', a version number or a label name; got {spec!r}."
        ) from None
    try:
        return Version.objects.get(chat_model=chat_model, number=number)
    except Version.DoesNotExist:
        raise VersionNotFound(f"Chat model {chat_model.name!r} has no version {number}.") from None


def _weighted_choice(versions: list[Version], ratios: list[float]) -> Version:
    weights = [max(r, 0.0) for r in ratios]
    if not any(weights):
        weights = [1.0] * len(versions)
    return random.choices(versions, weights=weights, k=1)[0]


def _label_resolve(chat_model: ChatModel, name: str) -> Version:
    """One of label ``name``'s versions, by its A/B ratios; VersionNotFound when there is no such label."""
    from .models import Label

    ratios = Label.objects.filter(chat_model=chat_model, name=name).values_list("ratios", flat=True).first()
    if not ratios:
        raise VersionNotFound(
            f"Chat model {chat_model.name!r} has no label {name!r}: move a label in the admin (chat model page, "
            "Labels), or ask for 'deploy', 'latest' or a version number."
        )
    numbers = [int(n) for n in ratios]
    by_number = {v.number: v for v in Version.objects.filter(chat_model=chat_model, number__in=numbers)}
    chosen = sorted(by_number)
    if not chosen:
        raise VersionNotFound(f"Label {name!r} of chat model {chat_model.name!r} names no existing version.")
    return _weighted_choice([by_number[n] for n in chosen], [float(ratios[str(n)]) for n in chosen])


def session_get(*, session_uuid: Any, chat_model: ChatModel | None = None) -> Session:
    """The session with this uuid (of ``chat_model`` when given), or SessionNotFound."""
    try:
        session = Session.objects.select_related("chat_model", "version").get(uuid=session_uuid)
    except (Session.DoesNotExist, ValueError, TypeError):
        raise SessionNotFound(f"No session {session_uuid}.") from None
    except DjangoValidationError:  # a malformed uuid string
        raise SessionNotFound(f"{session_uuid!r} is not a session uuid.") from None
    if chat_model is not None and session.chat_model_id != chat_model.pk:
        raise SessionOfOtherChatModel(
            f"Session {session_uuid} belongs to another chat model ({session.chat_model.name!r})."
        )
    return session


def session_messages(*, session: Session) -> QuerySet[Message]:
    """The session's messages in order: those of its current path (context/paths.py) when it has branches."""
    from .context import paths

    paths.state(session, fresh=True)
    path = paths.path_q(session)
    messages = Message.objects.filter(session=session)
    return (messages.filter(path) if path is not None else messages).order_by("seq")


def message_log(message: Message) -> dict[str, Any]:
    """A stored message as the seed's message_logs show it: role and content (None for a bare tool call) first."""
    log = to_log(
        {
            "role": message.role,
            "content": message.content,
            "name": message.name,
            "tool_call_id": message.tool_call_id,
            "function_call": message.function_call,
            "tool_calls": message.tool_calls,
        }
    )
    # Every entry has both keys, as the docs promise, so callers may read log["content"] without a default.
    return {"role": log.pop("role"), "content": log.pop("content", None), **log}


def config_build(*, version: Version, session: Session | None = None) -> ChatModelConfig:
    """The ChatModelConfig of a version, with the session's messages when there is one."""
    logs = [message_log(m) for m in session_messages(session=session)] if session is not None else []
    if session is not None:
        # The rolling summary (truncation "summary") leads, as the model sees it; name "summary" tells it apart.
        row = Session.objects.filter(pk=session.pk).values_list("summary", "summary_until_seq").first()
        if row and row[0]:
            logs.insert(0, {"role": "system", "name": "summary", "content": row[0], "summary_until_seq": row[1]})
    from .context.prompt import system_prompt_for

    return ChatModelConfig(
        # A session's config shows the prompt its runs send (its variable values in); without one, the template.
        system_prompt=system_prompt_for(version, session),
        version_detail={
            "model": version.model,
            "uuid": str(version.uuid),
            "version": version.number,
            "name": version.chat_model.name,
        },
        message_logs=logs,
    )


def chat_model_list() -> list[ChatModel]:
    """Every chat model, each with its versions prefetched (newest first)."""
    return list(ChatModel.objects.prefetch_related("versions").order_by("name"))


def session_list(*, user: Any, chat_model: ChatModel | None = None) -> QuerySet[Session]:
    """The sessions ``user`` created (none for an anonymous user), newest first, as a queryset."""
    if not getattr(user, "is_authenticated", False):
        return Session.objects.none()
    sessions = Session.objects.select_related("chat_model", "version").filter(user=user)
    if chat_model is not None:
        sessions = sessions.filter(chat_model=chat_model)
    return sessions.order_by("-created_at", "-pk")


def message_page(
    *,
    session: Session,
    after: int | None = None,
    before: int | None = None,
    limit: int = 50,
    order: str = "asc",
) -> tuple[list[Message], bool]:
    """A page of the session's messages by ``seq``, strictly between ``after`` and ``before``; and if more follow.

    A session with branches pages through its current path (context/paths.py): one bounded read of the
    path's seqs, then those rows.
    """
    from .context import paths

    paths.state(session, fresh=True)
    if paths.segments(*paths.state(session)) is not None:
        base = Message.objects.filter(session=session)
        desc = order == "desc"
        sql, params = paths.newest_first(
            base, session, columns=("seq",), size=limit + 1, before_seq=before, after_seq=after, desc=desc
        ) or ("", [])
        seqs = [r[0] for r in paths.fetch(base.db, sql, params)]
        rows = list(
            base.filter(seq__in=seqs).select_related("run", "feedback").order_by("-seq" if order == "desc" else "seq")
        )
        return rows[:limit], len(rows) > limit
    messages = Message.objects.filter(session=session).select_related("run", "feedback")
    if after is not None:
        messages = messages.filter(seq__gt=after)
    if before is not None:
        messages = messages.filter(seq__lt=before)
    rows = list(messages.order_by("-seq" if order == "desc" else "seq")[: limit + 1])
    return rows[:limit], len(rows) > limit


def timestamp(value: Any) -> str | None:
    """A datetime as the REST API writes every timestamp: DRF's ISO 8601 (``...Z`` in UTC), None for None."""
    from rest_framework.fields import DateTimeField

    return None if value is None else DateTimeField().to_representation(value)


def message_json(message: Message) -> dict[str, Any]:
    """A stored message as the REST API and run events show it."""
    data = message_log(message)
    data.update(
        id=message.pk,
        seq=message.seq,
        run_id=str(message.run.uuid) if message.run_id and message.run else None,
        token_count=message.token_count,
        metadata=message.metadata,
        created_at=timestamp(message.created_at),
    )
    if Message.feedback.is_cached(message):  # read with the page (message_page), never a query per message
        from .services.feedback import feedback_json

        data["feedback"] = feedback_json(getattr(message, "feedback", None))
    return data


# --- admin reads ---------------------------------------------------------------------------------


def chat_model_usage(*, chat_model: ChatModel | None = None, now: Any = None) -> list[dict[str, Any]]:
    """Runs, failures, tokens and cost per chat model over the last 7 and 30 days (one query), busiest first."""
    # Imported here so that this section stays a pure addition to the module.
    from datetime import timedelta

    from django.db.models import Count, F, Q, Sum
    from django.db.models.functions import Coalesce
    from django.utils import timezone

    from .models import Run

    now = now or timezone.now()
    week = Q(created_at__gte=now - timedelta(days=7))
    failed = Q(status__in=[Run.Status.FAILED, Run.Status.INCOMPLETE])
    tokens = Coalesce(F("prompt_tokens"), 0) + Coalesce(F("completion_tokens"), 0)
    runs = Run.objects.filter(created_at__gte=now - timedelta(days=30))
    if chat_model is not None:
        runs = runs.filter(version__chat_model=chat_model)
    rows = (
        runs.values(chat_model_id=F("version__chat_model_id"), name=F("version__chat_model__name"))
        .annotate(
            runs_7=Count("pk", filter=week),
            failed_7=Count("pk", filter=week & failed),
            tokens_7=Coalesce(Sum(tokens, filter=week), 0),
            cost_7=Sum("cost", filter=week),
            runs_30=Count("pk"),
            failed_30=Count("pk", filter=failed),
            tokens_30=Coalesce(Sum(tokens), 0),
            cost_30=Sum("cost"),
        )
        .order_by("-runs_30", "name")
    )
    return [dict(row) for row in rows]


def _runs_failed(prefix: str = "") -> Any:
    """A Q for runs that failed or stopped short (``prefix`` reaches them from another model)."""
    from django.db.models import Q

    from .models import Run

    return Q(**{f"{prefix}status__in": [Run.Status.FAILED, Run.Status.INCOMPLETE]})


def version_choices(*, chat_model_id: int, limit: int = 100) -> list[tuple[int, int]]:
    """(pk, number) of a chat model's newest ``limit`` versions, newest first."""
    versions = Version.objects.filter(chat_model_id=chat_model_id).order_by("-number")
    return list(versions.values_list("pk", "number")[:limit])


def versions_annotate_in_use(versions: QuerySet[Version]) -> QuerySet[Version]:
    """``versions`` with ``_in_use``: whether each has served a session (and so is read-only)."""
    from django.db.models import Exists, OuterRef

    return versions.annotate(_in_use=Exists(Session.objects.filter(version=OuterRef("pk"))))


def chat_models_annotate_versions(chat_models: QuerySet[ChatModel]) -> QuerySet[ChatModel]:
    """``chat_models`` with ``_version_count`` and ``published`` (their published versions, by number)."""
    from django.db.models import Count, Prefetch

    published = Version.objects.filter(is_published=True).order_by("number")
    return chat_models.annotate(_version_count=Count("versions")).prefetch_related(
        Prefetch("versions", queryset=published, to_attr="published")
    )


def chat_model_versions(*, chat_model: ChatModel, limit: int) -> list[Version]:
    """The chat model's newest ``limit`` versions, newest first, with their authors and ``_in_use``."""
    versions = Version.objects.filter(chat_model=chat_model).select_related("created_by").order_by("-number")
    return list(versions_annotate_in_use(versions)[:limit])


def publish_history(*, chat_model: ChatModel, limit: int = 20) -> list[Any]:
    """The chat model's newest ``limit`` publishes and unpublishes, with their versions and users."""
    from .models import PublishRecord

    records = PublishRecord.objects.filter(version__chat_model=chat_model).select_related("version", "user")
    return list(records[:limit])


def versions_by_number(*, chat_model: ChatModel, numbers: list[int]) -> dict[int, Version]:
    """The chat model's versions with these numbers, by number (missing numbers are left out)."""
    return {v.number: v for v in Version.objects.filter(chat_model=chat_model, number__in=numbers)}


def version_latest(*, chat_model_id: int) -> Version | None:
    """The chat model's newest version, or None when it has none (or there is no such chat model)."""
    return Version.objects.filter(chat_model_id=chat_model_id).order_by("-number").first()


def version_diff_targets(*, version: Version) -> dict[str, int | None]:
    """Numbers to compare a version with: the one before it, and the first other published one."""
    others = Version.objects.filter(chat_model_id=version.chat_model_id)
    previous = others.filter(number__lt=version.number).order_by("-number").values_list("number", flat=True)
    published = others.filter(is_published=True).exclude(pk=version.pk).order_by("number")
    return {
        "previous": previous.first(),
        "published": published.values_list("number", flat=True).first(),
    }


def versions_published(*, chat_model_ids: Any) -> list[Version]:
    """The published versions of these chat models, with their chat models, by chat model name and number."""
    versions = Version.objects.filter(chat_model__in=chat_model_ids, is_published=True).select_related("chat_model")
    return list(versions.order_by("chat_model__name", "number"))


def sessions_filter_failed_runs(sessions: QuerySet[Session], *, failed: bool) -> QuerySet[Session]:
    """The ``sessions`` with a failed run (``failed``), or with none."""
    from django.db.models import Exists, OuterRef

    from .models import Run

    has_failed = Exists(Run.objects.filter(_runs_failed(), session=OuterRef("pk")))
    return sessions.filter(has_failed if failed else ~has_failed)


def session_failed_runs(*, session: Session, first_seq: int, last_seq: int) -> list[Any]:
    """The session's failed runs that were given messages up to a seq from first_seq to last_seq, oldest first."""
    from .models import Run

    runs = Run.objects.filter(_runs_failed(), session=session, last_seq__gte=first_seq, last_seq__lte=last_seq)
    return list(runs.order_by("created_at"))


def session_run_totals(*, session: Session) -> dict[str, Any]:
    """The session's runs, failed runs, prompt and completion tokens, and cost (None when no run knows it)."""
    from django.db.models import Count, Sum
    from django.db.models.functions import Coalesce

    from .models import Run

    return Run.objects.filter(session=session).aggregate(
        runs=Count("pk"),
        failed=Count("pk", filter=_runs_failed()),
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        cost=Sum("cost"),
    )


def playground_session_get(*, version: Version, session_uuid: Any) -> Session | None:
    """The admin playground session ``session_uuid`` on this version, or None."""
    sessions = Session.objects.filter(uuid=session_uuid, version=version, is_playground=True)
    return sessions.select_related("chat_model", "version").first()


# --- a session's runs (the example chat page) ------------------------------------------------------


def session_runs(*, session: Session, limit: int = 200) -> list[Any]:
    """The session's newest ``limit`` runs, oldest first: what each turn cost and how it ended."""
    from .models import Run

    return list(reversed(Run.objects.filter(session=session).order_by("-created_at", "-pk")[:limit]))


# --- feedback on replies (admin) ---------------------------------------------------------------------


def feedback_by_version(*, chat_model: ChatModel) -> list[dict[str, Any]]:
    """Thumbs up and down per version of the chat model (one query), newest version first; ``rate`` is the
    share of thumbs up (None without feedback)."""
    from django.db.models import Count, Q

    from .models import Feedback

    rows = (
        Feedback.objects.filter(version__chat_model=chat_model)
        .values("version_id", "version__number")
        .annotate(up=Count("pk", filter=Q(rating=1)), down=Count("pk", filter=Q(rating=-1)))
        .order_by("-version__number")
    )
    out = []
    for row in rows:
        total = row["up"] + row["down"]
        out.append(
            {
                "version_id": row["version_id"],
                "number": row["version__number"],
                "up": row["up"],
                "down": row["down"],
                "total": total,
                "rate": row["up"] / total if total else None,
            }
        )
    return out


def feedback_commented(*, chat_model: ChatModel, version: Version | None = None, limit: int = 20) -> list[Any]:
    """The newest ``limit`` feedbacks with a comment on the chat model's replies (or one version's), with their
    messages, sessions, versions and users (one query)."""
    from .models import Feedback

    rows = Feedback.objects.filter(version__chat_model=chat_model).exclude(comment="")
    if version is not None:
        rows = rows.filter(version=version)
    rows = rows.select_related("message__session", "version", "user").order_by("-updated_at", "-pk")
    return list(rows[:limit])
