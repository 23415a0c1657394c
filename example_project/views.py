"""The example site's chat page, built on chatmodel_app's REST API and its websocket client (chatmodel.js)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Substr
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET

from chatmodel_app import selectors, services
from chatmodel_app.api.permissions import session_access
from chatmodel_app.conf import conf
from chatmodel_app.exceptions import ChatModelNotFound, SessionNotFound
from chatmodel_app.models import ChatModel, Message, Run, Session
from chatmodel_app.services import conversations

RECENT_SESSIONS = 10
# Characters of a chat's first message read for its label in the recent chats.
LABEL_CHARS = 80


def _own_session(request: HttpRequest, session_uuid: Any) -> Session:
    """The session if this user may chat in it (the REST API's rule); 404 as if it did not exist otherwise."""
    try:
        session = selectors.session_get(session_uuid=session_uuid)
    except SessionNotFound:
        raise Http404("No such session.") from None
    if session_access(request.user, session) != "write":
        raise Http404("No such session.")
    return session


@login_required(login_url="login")
@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page: pick a chat model, start or resume a session, and chat with it live."""
    chat_models = services.chat_model_list()
    session = _own_session(request, request.GET["session"]) if request.GET.get("session") else None
    if session is not None:
        chat_model = session.chat_model
    elif request.GET.get("chat_model"):
        try:
            chat_model = selectors.chat_model_get(name=request.GET["chat_model"])
        except ChatModelNotFound:
            raise Http404("No such chat model.") from None
    else:
        # The first chat model that can start a session; new chat models appear once a version is published.
        chat_model = next((c for c in chat_models if any(v.is_published for v in c.versions.all())), None)
        chat_model = chat_model or (chat_models[0] if chat_models else None)

    entries = [
        {
            "name": c.name,
            "description": c.description,
            "published": any(v.is_published for v in c.versions.all()),
            "selected": chat_model is not None and c.pk == chat_model.pk,
        }
        for c in chat_models
    ]
    selected = next((e for e in entries if e["selected"]), None)
    recent = []
    if chat_model is not None:
        # Named conversations: most recently active first, archived ones left out (conversations.js searches).
        sessions = conversations.conversation_list(user=request.user, chat_model=chat_model, include_playground=False)
        recent = list(_labelled(sessions)[:RECENT_SESSIONS])
    config = {
        "clientUrl": static("chatmodel_app/chatmodel.js"),
        "markdownUrl": static("example/markdown.js"),
        "csrfToken": get_token(request),
        "chatModel": chat_model.name if chat_model is not None else None,
        "canStart": bool(selected and selected["published"]),
        "session": _session_json(session) if session is not None else None,
        "chatPageUrl": reverse("chat"),
        "createSessionUrl": (
            reverse("chatmodel_api:session-create", args=[chat_model.name]) if chat_model is not None else None
        ),
        "runsUrl": reverse("chat-runs", args=["00000000-0000-0000-0000-000000000000"]),
        # Checked before a chat is started for a message, so a refused one leaves no empty chat behind.
        "maxMessageChars": conf.MAX_MESSAGE_CHARS,
        # conversations.js: the sidebar's search, rename, archive and delete, and feedback on replies.
        "sessionsApiUrl": reverse("chatmodel_api:sessions"),
        "sessionApiUrl": reverse("chatmodel_api:session", args=["00000000-0000-0000-0000-000000000000"]),
    }
    context = {
        "chat_models": entries,
        "chat_model": selected,
        "session": session,
        "recent_sessions": recent,
        "config": config,
        "debug": settings.DEBUG,
    }
    return render(request, "example/chat.html", context)


@login_required(login_url="login")
@require_GET
def react_page(request: HttpRequest) -> HttpResponse:
    """The React page (example_project/frontend): useChat over the AI SDK UI message stream endpoint.

    The chat id is a session uuid: ``?session=<uuid>`` reopens (and resumes) a chat of this user's; a new chat gets
    a fresh uuid here, and its session is created by the endpoint on the first message.
    """
    session = _own_session(request, request.GET["session"]) if request.GET.get("session") else None
    chat_model: ChatModel | None
    if session is not None:
        chat_model = session.chat_model
    else:
        chat_models = services.chat_model_list()
        wanted = request.GET.get("chat_model")
        if wanted and not any(c.name == wanted for c in chat_models):
            raise Http404("No such chat model.")
        published = [c for c in chat_models if any(v.is_published for v in c.versions.all())]
        chat_model = next((c for c in published if c.name == wanted or not wanted), None)
    config = None
    if chat_model is not None:
        config = {
            "chatModel": chat_model.name,
            "chatId": str(session.uuid if session is not None else uuid.uuid4()),
            "resume": session is not None,
            "api": reverse("chatmodel_ai_sdk:chat", kwargs={"name": chat_model.name}),
            "csrfToken": get_token(request),
            "newChatUrl": f"{reverse('react')}?{urlencode({'chat_model': chat_model.name})}",
        }
    return render(request, "example/react.html", {"config": config, "chat_model": chat_model, "session": session})


def _labelled(sessions: QuerySet[Session]) -> QuerySet[Session]:
    """Sessions with their first user message as ``label`` (its start only); chats never begun are left out."""
    first = (
        Message.objects.filter(session=OuterRef("pk"), role=Message.Role.USER)
        .order_by("seq")
        .annotate(head=Substr("content", 1, LABEL_CHARS))
        .values("head")[:1]
    )
    return sessions.annotate(label=Subquery(first)).exclude(label=None).select_related("version")


def _session_json(session: Session) -> dict[str, Any]:
    return {"uuid": str(session.uuid), "chat_model": session.chat_model.name, "version": session.version.number}


def _run_json(run: Run) -> dict[str, Any]:
    return {
        "run_id": str(run.uuid),
        "status": run.status,
        "model": run.model,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "cost": run.cost,
        "latency_ms": run.latency_ms,
        "error": run.error,
        "error_log": run.error_log,
        "last_seq": run.last_seq,
    }


@login_required(login_url="login")
@require_GET
def session_runs(request: HttpRequest, session_uuid: str) -> JsonResponse:
    """Tokens, cost and outcome of the session's runs, so a reloaded page shows them for every turn."""
    session = _own_session(request, session_uuid)
    return JsonResponse({"results": [_run_json(run) for run in selectors.session_runs(session=session)]})


class LoginView(auth_views.LoginView):
    """Django's login, on the example site's own page (it names the demo account in development)."""

    template_name = "example/login.html"
    next_page = "chat"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "debug": settings.DEBUG}
