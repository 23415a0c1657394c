"""Versions from code: the one way to create one (validated, numbered), publishing, and the testing docs' snippet."""

from __future__ import annotations

import pytest

from chatmodel_app import ChatModel, services
from chatmodel_app.exceptions import InvalidParams
from chatmodel_app.models import ChatModel as ChatModelRow
from chatmodel_app.models import PublishRecord
from chatmodel_app.testing import FakeReply

pytestmark = pytest.mark.django_db


def test_the_testing_docs_snippet_creates_publishes_and_runs_a_version(fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    fake_llm.enqueue(FakeReply(content="Hi!"))
    row, _ = ChatModelRow.objects.get_or_create(name="my_assistant")
    version = services.version_create(
        chat_model=row,
        system_prompt="You are terse.",
        model="openai/any-name",
        params={"api_base": fake_llm.url, "temperature": 0.2},
    )
    services.version_publish(version=version)
    session = ChatModel("my_assistant")
    session.add_messages([{"role": "user", "content": "Hi"}])
    res = session.run()
    assert not res.error and res.content == "Hi!" and res.version == 1
    assert PublishRecord.objects.filter(version=version, action=PublishRecord.Action.PUBLISH).exists()


def test_versions_are_numbered_per_chat_model_and_validated():
    a, _ = ChatModelRow.objects.get_or_create(name="a")
    b, _ = ChatModelRow.objects.get_or_create(name="b")
    assert [services.version_create(chat_model=a, model="offline/demo").number for _ in range(3)] == [1, 2, 3]
    assert services.version_create(chat_model=b, model="offline/demo", truncation="summary").number == 1
    with pytest.raises(InvalidParams, match="model is required"):
        services.version_create(chat_model=a)
    with pytest.raises(InvalidParams):
        services.version_create(chat_model=a, model="offline/demo", params={"temperature": 9})
    with pytest.raises(InvalidParams, match="truncation_last_messages"):
        services.version_create(chat_model=a, model="offline/demo", truncation="last_messages")
    assert a.versions.count() == 3
