"""Prompts as code: chatmodel_export and chatmodel_import write and read chat models with their versions."""

from __future__ import annotations

import builtins
import io
import json

import pytest
from django.core.management import CommandError, call_command

from chatmodel_app import services, validation
from chatmodel_app.models import ChatModel, PublishRecord, Version

pytestmark = pytest.mark.django_db

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
PROMPT = "You are a helpful assistant.\nAnswer in one sentence.\n\n- Be kind.\n- Use metric units."


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("chatmodel_export", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_(path, *args: str) -> str:
    out = io.StringIO()
    call_command("chatmodel_import", str(path), *args, stdout=out)
    return out.getvalue()


def snapshot() -> list[tuple]:
    """Everything an import may write, comparable across a delete and re-import (not ids or timestamps)."""
    rows = Version.objects.select_related("chat_model", "created_by").order_by("chat_model__name", "number")
    fields = [*validation.VERSION_FIELDS, "number", "uuid", "is_published", "ratio"]
    return [
        (v.chat_model.name, v.chat_model.description, v.created_by and v.created_by.username)
        + tuple(json.dumps(getattr(v, f), default=str, sort_keys=True) for f in fields)
        for v in rows
    ]


@pytest.fixture
def library(admin_user):
    """Two chat models: one with an A/B test, tools and a multi-line prompt, one with a draft only."""
    assistant = ChatModel.objects.create(name="assistant", description="General help.")
    v1 = services.version_create(chat_model=assistant, model="offline/demo", system_prompt="Hi.")
    v2 = services.version_create(
        chat_model=assistant,
        model="gpt-4o-mini",
        system_prompt=PROMPT,
        params={"temperature": 0.3, "max_tokens": 200},
        tools=[WEATHER],
        memo="Shorter answers.",
        tags=["ab", "units"],
        truncation="last_messages",
        truncation_last_messages=30,
        fallbacks=["offline/demo"],
        created_by=admin_user,
    )
    services.versions_publish(chat_model=assistant, ratios={v1.number: 3, v2.number: 1})
    greeter = ChatModel.objects.create(name="greeter")
    services.version_create(chat_model=greeter, model="offline/demo", system_prompt="Say hello. Ünïcode ✓")
    return assistant, greeter


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_round_trip_restores_every_version(library, tmp_path, suffix):
    path = tmp_path / f"prompts.{suffix}"
    export("-o", str(path))
    before = snapshot()
    text = path.read_text()
    if suffix == "yaml":
        assert "system_prompt: |-\n      You are a helpful assistant.\n      Answer in one sentence." in text
    else:
        assert json.loads(text)["format"] == services.EXPORT_FORMAT

    PublishRecord.objects.all().delete()
    ChatModel.objects.all().delete()
    output = import_(path)
    assert "created chat model assistant" in output and "created assistant v2" in output
    assert "published assistant: v1 (3), v2 (1)" in output
    assert snapshot() == before
    # Exported again, it is the same file: reviewable in git without noise.
    again = tmp_path / f"again.{suffix}"
    export("-o", str(again))
    assert _without_timestamps(again.read_text()) == _without_timestamps(text)


def _without_timestamps(text: str) -> list[str]:
    return [line for line in text.splitlines() if "created_at" not in line]


def test_import_is_idempotent(library, tmp_path):
    path = tmp_path / "prompts.yaml"
    export("-o", str(path))
    records = PublishRecord.objects.count()
    output = import_(path)
    assert output.strip() == "0 created, 0 updated, 3 unchanged, 0 chat model(s) republished."
    assert PublishRecord.objects.count() == records
    assert import_(path) == output


def test_export_chosen_chat_models_to_stdout(library):
    data = json.loads(export("greeter", "--format", "json"))
    assert [c["name"] for c in data["chat_models"]] == ["greeter"]
    assert data["chat_models"][0]["versions"][0]["system_prompt"] == "Say hello. Ünïcode ✓"
    with pytest.raises(CommandError, match="No chat model is named 'nope'"):
        export("nope")


def edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_import_updates_unused_drafts_adds_versions_and_republishes(library, tmp_path, admin_user):
    path = tmp_path / "prompts.json"
    export("-o", str(path))

    def change(data):
        greeter = data["chat_models"][1]
        greeter["versions"][0]["system_prompt"] = "Say hello warmly."
        greeter["versions"].append({**greeter["versions"][0], "number": 2, "uuid": None, "is_published": True})
        data["chat_models"][0]["description"] = "Helps."

    edit(path, change)
    output = import_(path, "--user", admin_user.username)
    assert "updated greeter v1" in output and "created greeter v2" in output
    assert "published greeter: v2 (1)" in output
    greeter = ChatModel.objects.get(name="greeter")
    assert greeter.versions.get(number=1).system_prompt == "Say hello warmly."
    assert greeter.versions.get(number=2).is_published
    assert ChatModel.objects.get(name="assistant").description == "Helps."
    assert PublishRecord.objects.filter(version__chat_model=greeter).get().user == admin_user


def test_import_refuses_to_change_a_version_that_served_sessions(library, tmp_path):
    assistant, greeter = library
    services.session_create(chat_model=assistant, version=assistant.versions.get(number=1))
    path = tmp_path / "prompts.json"
    export("-o", str(path))
    before = snapshot()

    def change(data):
        data["chat_models"][1]["versions"][0]["system_prompt"] = "Changed draft."  # allowed on its own
        data["chat_models"][0]["versions"][0]["system_prompt"] = "Changed live prompt."

    edit(path, change)
    with pytest.raises(CommandError) as info:
        import_(path)
    assert "assistant v1 has served sessions, so the import will not change it" in str(info.value)
    assert "differs in: system_prompt" in str(info.value) and "Nothing was imported." in str(info.value)
    assert snapshot() == before  # all or nothing: the draft's change was rolled back too


def test_dry_run_and_no_publish(library, tmp_path):
    assistant, _ = library
    path = tmp_path / "prompts.json"
    export("-o", str(path))

    def change(data):
        versions = data["chat_models"][0]["versions"]
        versions[0]["is_published"] = False  # publish v2 alone
        versions[0]["memo"] = "Retired."

    edit(path, change)
    before = snapshot()
    output = import_(path, "--dry-run")
    assert "updated assistant v1" in output and "published assistant: v2 (1)" in output
    assert "Dry run: nothing was saved." in output
    assert snapshot() == before

    import_(path, "--no-publish")
    assert assistant.versions.get(number=1).memo == "Retired."
    assert set(assistant.versions.filter(is_published=True).values_list("number", flat=True)) == {1, 2}
    import_(path)
    assert list(assistant.versions.filter(is_published=True).values_list("number", "ratio")) == [(2, 1.0)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("chat_models: [", "Not valid YAML"),
        ('{"chat_models": [', "Not valid JSON"),
        ("just text", "must be an object with a 'chat_models' list"),
        ('{"format": "other/2", "chat_models": []}', "Unknown format 'other/2'"),
        ('{"chat_models": [{"name": "bad name", "versions": []}]}', "chat_models[0].name must be a slug"),
        (
            '{"chat_models": [{"name": "x", "versions": [{"number": 1, "model": "offline/demo", "colour": 1}]}]}',
            "chat_models[0].versions[0] (x) has unknown keys: colour",
        ),
        (
            '{"chat_models": [{"name": "x", "versions": [{"number": 1, "model": "m", "params": {"temperature": 9}}]}]}',
            "chat_models[0].versions[0] (x): temperature must be a number from 0.0 to 2.0",
        ),
        (
            '{"chat_models": [{"name": "x", "versions": [{"number": 1, "model": "m", "tools": [{"name": "a b"}]}]}]}',
            "tools[0].name must be 1-64 letters",
        ),
        (
            '{"chat_models": [{"name": "x", "versions": [{"number": 1, "model": "m", "is_published": true, '
            '"ratio": 0}]}]}',
            "The A/B ratio of v1 must be a positive number",
        ),
        ('{"chat_models": [{"name": "x", "versions": [{"number": 0, "model": "m"}]}]}', "number must be a positive"),
    ],
)
def test_import_explains_bad_files_and_saves_nothing(tmp_path, db, content, message):
    path = tmp_path / ("bad.yaml" if content.startswith(("chat", "just")) else "bad.json")
    path.write_text(content)
    with pytest.raises(CommandError) as info:
        import_(path)
    assert message in str(info.value)
    assert not ChatModel.objects.exists()


def test_import_refuses_a_uuid_taken_by_another_version(library, tmp_path):
    assistant, greeter = library
    taken = str(assistant.versions.get(number=1).uuid)
    path = tmp_path / "new.json"
    path.write_text(
        json.dumps({"chat_models": [{"name": "greeter", "versions": [{"number": 5, "model": "m", "uuid": taken}]}]})
    )
    with pytest.raises(CommandError, match="already belongs to assistant v1"):
        import_(path)


def test_import_reads_standard_input(library, monkeypatch):
    text = export("--format", "json")
    ChatModel.objects.all().delete()
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    output = import_("-")
    assert "created chat model greeter" in output


def test_yaml_without_pyyaml_says_so(library, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_yaml(name, *args, **kwargs):
        if name == "yaml":
            raise ImportError("No module named 'yaml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yaml)
    with pytest.raises(CommandError, match="YAML needs PyYAML: pip install PyYAML, or use --format json."):
        export("--format", "yaml")
    json_text = export("--format", "json")  # JSON always works
    assert json.loads(json_text)["chat_models"]
