"""Reads: chat models, versions, sessions, configs and message pages."""

from __future__ import annotations

import random
from typing import Any

from django.db.models import QuerySet

from .exceptions import ChatModelNotFound, SessionNotFound, VersionNotFound
from .llm.messages import to_log
from .models import ChatModel, Message, Session, Version
from .types import ChatModelConfig

VersionSpec = str | int | None


def chat_model_get(*, name: str) -> ChatModel:
    """The chat model called ``name``, or ChatModelNotFound."""
    try:
        return ChatModel.objects.get(name=name)
    except ChatModel.DoesNotExist:
        raise ChatModelNotFound(f"No chat model is named {name!r}.") from None


def version_resolve(*, chat_model: ChatModel, spec: VersionSpec = "deploy") -> Version:
    """The version ``spec`` names: "deploy" (a published one, by A/B ratio), "latest", or a number."""
    if spec is None or spec == "deploy":
        published = list(Version.objects.filter(chat_model=chat_model, is_published=True).order_by("number"))
        if not published:
            raise VersionNotFound(
                f"Chat model {chat_model.name!r} has no published version: publish one in the admin, "
                "or ask for version='latest' or a version number."
            )
        weights = [max(v.ratio, 0.0) for v in published]
        if not any(weights):
            weights = [1.0] * len(published)
        return random.choices(published, weights=weights, k=1)[0]
    if spec == "latest":
        version = Version.objects.filter(chat_model=chat_model).order_by("-number").first()
        if version is None:
            raise VersionNotFound(f"Chat model {chat_model.name!r} has no versions yet.")
        return version
    try:
        number = int(spec)
    except (TypeError, ValueError):
        raise VersionNotFound(f"version must be 'deploy', 'latest' or a version number; got {spec!r}.") from None
    try:
        return Version.objects.get(chat_model=chat_model, number=number)
    except Version.DoesNotExist:
        raise VersionNotFound(f"Chat model {chat_model.name!r} has no version {number}.") from None


def session_get(*, session_uuid: Any, chat_model: ChatModel | None = None) -> Session:
    """The session with this uuid (of ``chat_model`` when given), or SessionNotFound."""
    try:
        session = Session.objects.select_related("chat_model", "version").get(uuid=session_uuid)
    except (Session.DoesNotExist, ValueError, TypeError):
        raise SessionNotFound(f"No session {session_uuid}.") from None
    except Exception as exc:  # a malformed uuid string raises ValidationError
        if exc.__class__.__name__ == "ValidationError":
            raise SessionNotFound(f"{session_uuid!r} is not a session uuid.") from None
        raise
    if chat_model is not None and session.chat_model_id != chat_model.pk:
        raise SessionNotFound(f"Session {session_uuid} belongs to another chat model ({session.chat_model.name!r}).")
    return session


def session_messages(*, session: Session) -> QuerySet[Message]:
    """The session's messages in order."""
    return Message.objects.filter(session=session).order_by("seq")


def message_log(message: Message) -> dict[str, Any]:
    """A stored message as the seed's message_logs show it."""
    return to_log(
        {
            "role": message.role,
            "content": message.content,
            "name": message.name,
            "tool_call_id": message.tool_call_id,
            "function_call": message.function_call,
            "tool_calls": message.tool_calls,
        }
    )


def config_build(*, version: Version, session: Session | None = None) -> ChatModelConfig:
    """The ChatModelConfig of a version, with the session's messages when there is one."""
    logs = [message_log(m) for m in session_messages(session=session)] if session is not None else []
    if session is not None:
        # The rolling summary (truncation "summary") leads, as the model sees it; name "summary" tells it apart.
        row = Session.objects.filter(pk=session.pk).values_list("summary", "summary_until_seq").first()
        if row and row[0]:
            logs.insert(0, {"role": "system", "name": "summary", "content": row[0], "summary_until_seq": row[1]})
    return ChatModelConfig(
        system_prompt=version.system_prompt,
        version_detail={
            "model": version.model,
            "uuid": str(version.uuid),
            "version": version.number,
            "name": version.chat_model.name,
        },
        message_logs=logs,
    )


def message_json(message: Message) -> dict[str, Any]:
    """A stored message as the REST API and run events show it."""
    data = message_log(message)
    data.update(
        id=message.pk,
        seq=message.seq,
        run_id=str(message.run.uuid) if message.run_id and message.run else None,
        token_count=message.token_count,
        metadata=message.metadata,
        created_at=message.created_at.isoformat() if message.created_at else None,
    )
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
    rows = Run.objects.filter(created_at__gte=now - timedelta(days=30))
    if chat_model is not None:
        rows = rows.filter(version__chat_model=chat_model)
    rows = (
        rows.values(chat_model_id=F("version__chat_model_id"), name=F("version__chat_model__name"))
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
    return list(rows)


# --- a session's runs (the example chat page) ------------------------------------------------------


def session_runs(*, session: Session, limit: int = 200) -> list[Any]:
    """The session's newest ``limit`` runs, oldest first: what each turn cost and how it ended."""
    from .models import Run

    return list(reversed(Run.objects.filter(session=session).order_by("-created_at", "-pk")[:limit]))
