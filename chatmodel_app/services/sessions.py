"""Sessions: the one way to create one, and the get-or-create every door uses."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction

from ..exceptions import InvalidParams, SessionNotFound, SessionOfOtherChatModel
from ..models import ChatModel, Session, Version
from ..selectors import VersionSpec, chat_model_get, session_get, version_resolve
from ..validation import session_variables_clean


def session_create(
    *,
    chat_model: ChatModel,
    version: VersionSpec | Version = "deploy",
    user: Any = None,
    metadata: Mapping[str, Any] | None = None,
    session_uuid: Any = None,
    is_playground: bool = False,
    variables: Mapping[str, Any] | None = None,
) -> Session:
    """Start a session pinned to the version ``version`` resolves to; IntegrityError if the uuid is taken.

    ``variables`` are the values of the version's prompt variables (docs/prompts.md): InvalidParams when one is
    unknown, not text or too long, or a required one is missing; so a session never exists without them.
    """
    pinned = version if isinstance(version, Version) else version_resolve(chat_model=chat_model, spec=version)
    session = Session(
        chat_model=chat_model,
        version=pinned,
        user=user if getattr(user, "is_authenticated", False) else None,
        metadata=dict(metadata or {}),
        is_playground=is_playground,
        variables=session_variables_clean(pinned.variables or [], variables),
    )
    if session_uuid is not None:
        session.uuid = uuid.UUID(str(session_uuid))
    with transaction.atomic():
        session.save()
    return session


def session_open(
    *,
    chat_model: ChatModel,
    session_uuid: Any = None,
    version: VersionSpec | Version = "deploy",
    user: Any = None,
    metadata: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
) -> tuple[Session, bool]:
    """The session ``session_uuid`` (of any chat model: the caller checks), or a new one; and whether it is new.

    Two processes creating the same uuid at once both get the one that won. ``variables`` are used only for a
    new session: a caller that may use an existing one checks them with ``session_variables_match`` (after its
    access check, so that a refusal never tells that someone else's session exists).
    """
    if session_uuid is not None:
        existing = Session.objects.select_related("chat_model", "version").filter(uuid=session_uuid).first()
        if existing is not None:
            return existing, False
    try:
        session = session_create(
            chat_model=chat_model,
            version=version,
            user=user,
            metadata=metadata,
            session_uuid=session_uuid,
            variables=variables,
        )
    except IntegrityError:
        if session_uuid is None:
            raise
        return Session.objects.select_related("chat_model", "version").get(uuid=session_uuid), False
    return session, True


def session_variables_match(*, session: Session, variables: Mapping[str, Any] | None) -> None:
    """Values given again for an existing session must be those it has: they are set once, when it is created.

    None (not given) always matches; InvalidParams otherwise, so a caller never believes new values took effect.
    """
    if variables is None:
        return
    if not isinstance(variables, Mapping):
        session_variables_clean(session.version.variables or [], variables)  # raises the shape error
    stored = session.variables or {}
    differ = sorted(str(name) for name, value in variables.items() if stored.get(name) != value)
    if differ:
        raise InvalidParams(
            f"Session {session.uuid} already exists, and its variables were set when it was created: "
            f"{', '.join(differ)} differ. Start a new session for other values.",
            field="variables",
        )


def session_get_or_create(
    *,
    name: str,
    session_uuid: Any,
    version: VersionSpec | Version = "deploy",
    user: Any = None,
    variables: Mapping[str, Any] | None = None,
) -> Session:
    """The session ``session_uuid`` of chat model ``name``, created (pinned to ``version``) on first use.

    Raises SessionOfOtherChatModel when the uuid belongs to another chat model.
    """
    chat_model = chat_model_get(name=name)
    try:
        existing = session_get(session_uuid=session_uuid, chat_model=chat_model)
    except SessionOfOtherChatModel:
        raise
    except SessionNotFound:
        pass
    else:
        session_variables_match(session=existing, variables=variables)
        return existing
    session, created = session_open(
        chat_model=chat_model, session_uuid=session_uuid, version=version, user=user, variables=variables
    )
    if session.chat_model_id != chat_model.pk:
        raise SessionOfOtherChatModel(
            f"Session {session_uuid} belongs to another chat model ({session.chat_model.name!r})."
        )
    if not created:
        session_variables_match(session=session, variables=variables)
    return session
