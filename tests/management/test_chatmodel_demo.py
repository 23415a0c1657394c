import pytest
from django.core.management import call_command

from chatmodel_app import ChatModel
from chatmodel_app.models import ChatModel as ChatModelRow
from chatmodel_app.models import PublishRecord, Version


@pytest.mark.django_db
def test_demo_creates_published_offline_chat_models(capsys, monkeypatch):
    monkeypatch.delenv("CHATMODEL_DEMO_MODEL", raising=False)
    call_command("chatmodel_demo", "--user", "demo")
    call_command("chatmodel_demo", "--user", "demo")  # idempotent
    assert set(ChatModelRow.objects.values_list("name", flat=True)) == {"simple_assistant", "say_hello_bot"}
    assert Version.objects.count() == 2
    for version in Version.objects.all():
        assert version.is_published and version.model == "offline/demo"
        assert version.system_prompt == "You are a helpful assistant."
    assert "demo / demo" in capsys.readouterr().out
    session = ChatModel("say_hello_bot")
    session.add_messages([{"role": "user", "content": "Hello."}])
    assert session.run().content == "Hello! What can I help you with?"


@pytest.mark.django_db
def test_demo_model_from_the_environment(monkeypatch):
    monkeypatch.setenv("CHATMODEL_DEMO_MODEL", "gpt-4o-mini")
    call_command("chatmodel_demo", "--no-user")
    assert set(Version.objects.values_list("model", flat=True)) == {"gpt-4o-mini"}


@pytest.mark.django_db
def test_demo_creates_no_login_unless_asked_and_records_its_publishing(capsys, monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.delenv("CHATMODEL_DEMO_MODEL", raising=False)
    call_command("chatmodel_demo")
    assert not get_user_model().objects.exists()
    assert "demo / demo" not in capsys.readouterr().out
    records = PublishRecord.objects.filter(action=PublishRecord.Action.PUBLISH)
    assert sorted(r.version.chat_model.name for r in records) == ["say_hello_bot", "simple_assistant"]
