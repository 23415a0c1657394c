"""What the admin tests post and read: URLs, editor data, error text, drafts and runs."""

from __future__ import annotations

import re

from django.urls import reverse

from chatmodel_app import services
from chatmodel_app.models import ChatModel, Run, Session, Version

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


def url(name: str, *args) -> str:
    return reverse(f"admin:chatmodel_app_{name}", args=args)


def editor_data(**overrides) -> dict[str, str]:
    """What the version editor posts, with every field as a person would leave it."""
    data = {
        "model": "offline/demo",
        "system_prompt": "You are a helpful assistant.",
        "params": "{}",
        "tools": "[]",
        "truncation": "auto",
        "truncation_last_messages": "",
        "context_window": "",
        "summary_model": "",
        "fallbacks": "",
        "memo": "",
        "tags": "",
    }
    data.update(overrides)
    return data


def errors_of(response) -> str:
    """The text of the form's error lists on a rendered admin page."""
    return " ".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S))


def draft(chat_model: ChatModel, prompt: str = "Draft prompt.", **fields) -> Version:
    return services.version_create(chat_model=chat_model, system_prompt=prompt, model="offline/demo", **fields)


def publish_action(client, versions, **extra):
    data = {"action": "publish_selected", "_selected_action": [str(v.pk) for v in versions], **extra}
    return client.post(url("version_changelist"), data)


def add_run(session: Session, *, status="completed", prompt=10, completion=5, cost=0.001, **fields) -> Run:
    return Run.objects.create(
        session=session,
        version=session.version,
        status=status,
        model=session.version.model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        latency_ms=120,
        time_to_first_token_ms=40,
        **fields,
    )
