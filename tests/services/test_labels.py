"""Labels: named sets of versions with A/B ratios, resolved like "deploy", moved like a publish, rolled back."""

from __future__ import annotations

import importlib
from collections import Counter

import pytest
from django.apps import apps

from chatmodel_app import ChatModel, services
from chatmodel_app.exceptions import InvalidParams, VersionNotFound
from chatmodel_app.models import ChatModel as ChatModelRow
from chatmodel_app.models import Label, PublishRecord, Session, Version
from chatmodel_app.selectors import version_resolve
from chatmodel_app.services.labels import (
    label_delete,
    label_move,
    label_rollback,
    label_rollback_target,
    label_sets,
    labels_overview,
    version_labels,
)
from chatmodel_app.validation import label_name_clean

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot(db) -> ChatModelRow:
    """A chat model with v1 (published), v2 and v3 (drafts)."""
    chat_model = ChatModelRow.objects.create(name="bot")
    for n in (1, 2, 3):
        services.version_create(chat_model=chat_model, system_prompt=f"Prompt {n}.", model="offline/demo")
    services.versions_publish(chat_model=chat_model, ratios={1: 1})
    return chat_model


def records(label: str) -> set[tuple]:
    rows = PublishRecord.objects.filter(label=label)
    return {(r.version.number, r.action, r.ratio, r.rollback) for r in rows}


# --- names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deploy", "latest", "3", "Staging", "a b", "-x", "", "x" * 51, "stag\ning", 5])
def test_label_names_are_lowercase_slugs_that_are_no_other_version_spec(name):
    with pytest.raises(InvalidParams):
        label_name_clean(name)


def test_label_names_that_are_fine():
    assert [label_name_clean(n) for n in ("staging", "canary-2", "ab_test", "production")] == [
        "staging",
        "canary-2",
        "ab_test",
        "production",
    ]


# --- moving and resolving ---------------------------------------------------------------------------------


def test_a_new_label_serves_its_version_and_is_recorded_like_a_publish(bot, admin_user):
    moved = label_move(chat_model=bot, label="staging", ratios={2: 1}, user=admin_user)
    assert [(r.version.number, r.action, r.label, r.previous, r.user) for r in moved] == [
        (2, "publish", "staging", {}, admin_user)
    ]
    assert version_resolve(chat_model=bot, spec="staging").number == 2
    # Production ("deploy") is untouched.
    assert version_resolve(chat_model=bot, spec="deploy").number == 1
    assert version_resolve(chat_model=bot, spec="production").number == 1
    assert label_sets(chat_model=bot) == {"production": {1: 1.0}, "staging": {2: 1.0}}
    # The Python door: a session pinned to the label's version.
    session = ChatModel("bot", version="staging")
    session.add_messages([{"role": "user", "content": "Hi"}])
    assert Session.objects.get(uuid=session.session_uuid).version.number == 2
    assert session.get_config().version == 2


def test_a_label_splits_sessions_by_its_ab_ratios(bot):
    label_move(chat_model=bot, label="canary", ratios={2: 1, 3: 1})
    seen = Counter(version_resolve(chat_model=bot, spec="canary").number for _ in range(300))
    assert set(seen) == {2, 3}
    label_move(chat_model=bot, label="canary", ratios={3: 1})
    assert {version_resolve(chat_model=bot, spec="canary").number for _ in range(20)} == {3}


def test_moving_records_only_what_changed(bot):
    label_move(chat_model=bot, label="staging", ratios={2: 3, 3: 1})
    PublishRecord.objects.all().delete()
    # Re-weighting v3 and dropping v2: one publish, one unpublish, each with the set it replaced.
    label_move(chat_model=bot, label="staging", ratios={3: 2})
    assert records("staging") == {(3, "publish", 2.0, False), (2, "unpublish", None, False)}
    assert {tuple(sorted(r.previous.items())) for r in PublishRecord.objects.all()} == {(("2", 3.0), ("3", 1.0))}
    # The same set again changes nothing and records nothing.
    assert label_move(chat_model=bot, label="staging", ratios={3: 2}) == []
    assert PublishRecord.objects.count() == 2


def test_moving_production_is_publishing(bot):
    label_move(chat_model=bot, label="production", ratios={2: 0.8, 3: 0.2})
    assert dict(Version.objects.filter(is_published=True).values_list("number", "ratio")) == {2: 0.8, 3: 0.2}
    assert records("production") >= {(2, "publish", 0.8, False), (3, "publish", 0.2, False)}
    assert not Label.objects.exists()  # production lives on the versions


@pytest.mark.parametrize(
    ("label", "ratios", "message"),
    [
        ("staging", {9: 1}, "has no version v9"),
        ("staging", {}, "at least one version"),
        ("staging", {2: 0}, "must be a positive number"),
        ("latest", {2: 1}, "cannot be a label name"),
        ("2", {2: 1}, "lowercase letters"),
    ],
)
def test_bad_moves_are_refused_and_change_nothing(bot, label, ratios, message):
    with pytest.raises(InvalidParams, match=message):
        label_move(chat_model=bot, label=label, ratios=ratios)
    assert not Label.objects.exists()
    assert not PublishRecord.objects.exclude(label="production").exists()


def test_unknown_labels_and_other_specs(bot):
    with pytest.raises(VersionNotFound, match="has no label 'staging'"):
        version_resolve(chat_model=bot, spec="staging")
    assert version_resolve(chat_model=bot, spec="latest").number == 3
    assert version_resolve(chat_model=bot, spec="2").number == 2
    assert version_resolve(chat_model=bot, spec=2).number == 2
    with pytest.raises(VersionNotFound, match="a label name"):
        version_resolve(chat_model=bot, spec="Not A Label")
    res = ChatModel("bot", version="staging").run()
    assert res.error and res.error_code == "version_not_found"


def test_version_labels_names_every_label_that_serves_a_version(bot):
    label_move(chat_model=bot, label="staging", ratios={1: 1, 2: 1})
    label_move(chat_model=bot, label="canary", ratios={1: 1})
    v1, v2, v3 = (Version.objects.get(chat_model=bot, number=n) for n in (1, 2, 3))
    assert version_labels(version=v1) == ["production", "canary", "staging"]
    assert version_labels(version=v2) == ["staging"]
    assert version_labels(version=v3) == []


# --- rollback ---------------------------------------------------------------------------------------------


def test_rollback_restores_production_in_one_step_and_twice_undoes_it(bot, admin_user):
    services.versions_publish(chat_model=bot, ratios={2: 3, 3: 1}, user=admin_user)
    assert label_rollback_target(chat_model=bot, label="production") == {1: 1.0}
    done = label_rollback(chat_model=bot, label="production", user=admin_user)
    assert dict(Version.objects.filter(is_published=True).values_list("number", "ratio")) == {1: 1.0}
    assert {(r.version.number, r.action, r.rollback, r.user) for r in done} == {
        (1, "publish", True, admin_user),
        (2, "unpublish", True, admin_user),
        (3, "unpublish", True, admin_user),
    }
    assert version_resolve(chat_model=bot, spec="deploy").number == 1
    # Rolling back the rollback brings the A/B test back, ratios and all.
    label_rollback(chat_model=bot, label="production")
    assert dict(Version.objects.filter(is_published=True).values_list("number", "ratio")) == {2: 3.0, 3: 1.0}


def test_rollback_of_an_unpublish(bot):
    services.versions_publish(chat_model=bot, ratios={1: 1, 2: 1})
    services.version_unpublish(version=Version.objects.get(chat_model=bot, number=2))
    label_rollback(chat_model=bot, label="production")
    assert set(Version.objects.filter(is_published=True).values_list("number", flat=True)) == {1, 2}


def test_rollback_of_a_label_and_of_its_deletion(bot):
    label_move(chat_model=bot, label="staging", ratios={2: 1})
    label_move(chat_model=bot, label="staging", ratios={3: 1})
    label_rollback(chat_model=bot, label="staging")
    assert label_sets(chat_model=bot)["staging"] == {2: 1.0}
    assert records("staging") >= {(2, "publish", 1.0, True), (3, "unpublish", None, True)}
    label_delete(chat_model=bot, label="staging")
    assert "staging" not in label_sets(chat_model=bot)
    with pytest.raises(VersionNotFound):
        version_resolve(chat_model=bot, spec="staging")
    # The deletion is a move too: the overview still offers its rollback, which brings the label back.
    overview = {row["name"]: row for row in labels_overview(chat_model=bot)}
    assert overview["staging"]["entries"] == [] and overview["staging"]["rollback_to"] == {2: 1.0}
    label_rollback(chat_model=bot, label="staging")
    assert version_resolve(chat_model=bot, spec="staging").number == 2


def test_rollback_is_refused_when_there_is_nothing_known_to_go_back_to(bot):
    with pytest.raises(InvalidParams, match="has never moved"):
        label_rollback(chat_model=bot, label="staging")
    label_move(chat_model=bot, label="staging", ratios={2: 1})
    with pytest.raises(InvalidParams, match="served nothing"):
        label_rollback(chat_model=bot, label="staging")
    # A record written before labels existed does not know the set it replaced.
    PublishRecord.objects.filter(label="production").update(previous=None)
    with pytest.raises(InvalidParams, match="is not known"):
        label_rollback(chat_model=bot, label="production")
    assert label_sets(chat_model=bot) == {"production": {1: 1.0}, "staging": {2: 1.0}}
    with pytest.raises(InvalidParams, match="cannot be deleted"):
        label_delete(chat_model=bot, label="production")


def test_rollback_refuses_a_set_whose_version_was_deleted(bot):
    label_move(chat_model=bot, label="staging", ratios={3: 1})
    label_move(chat_model=bot, label="staging", ratios={2: 1})
    Version.objects.filter(chat_model=bot, number=3).delete()
    with pytest.raises(InvalidParams, match="has no version v3"):
        label_rollback(chat_model=bot, label="staging")
    assert label_sets(chat_model=bot)["staging"] == {2: 1.0}


# --- the migration's replay of older publish history -------------------------------------------------------


def test_migration_learns_the_previous_sets_of_older_publishes(bot):
    migration = importlib.import_module("chatmodel_app.migrations.0005_variables_labels")
    # The history as it was written before labels: two publishes, no previous sets.
    services.versions_publish(chat_model=bot, ratios={2: 1})
    PublishRecord.objects.update(previous=None)
    migration.previous_sets_from_history(apps, None)
    # The newest publish (v2 replacing v1) knows it replaced {v1}, so its rollback works.
    assert label_rollback_target(chat_model=bot, label="production") == {1: 1.0}
    first = PublishRecord.objects.order_by("created_at", "pk").first()
    assert first.previous == {}
    # A history that does not end where the versions are is not trusted for the newest publish.
    Version.objects.filter(chat_model=bot, number=3).update(is_published=True)
    migration.previous_sets_from_history(apps, None)
    with pytest.raises(InvalidParams, match="is not known"):
        label_rollback_target(chat_model=bot, label="production")


# --- export and import ------------------------------------------------------------------------------------


def test_export_and_import_carry_variables_and_labels(bot):
    services.version_create(
        chat_model=bot,
        system_prompt="Hi {{ who }}.",
        model="offline/demo",
        variables=[{"name": "who", "required": True, "description": "The customer"}],
    )
    label_move(chat_model=bot, label="staging", ratios={4: 1})
    label_move(chat_model=bot, label="canary", ratios={2: 1, 4: 3})
    data = services.chat_models_export()
    [entry] = data["chat_models"]
    assert entry["labels"] == {"canary": {"2": 1.0, "4": 3.0}, "staging": {"4": 1.0}}
    assert entry["versions"][3]["variables"] == [
        {"name": "who", "default": "", "required": True, "description": "The customer"}
    ]
    # Into an empty site: the same versions, declarations and labels.
    ChatModelRow.objects.all().delete()
    report = services.chat_models_import(data=data)
    assert "bot@canary: v2 (1), v4 (3)" in report.published and "bot@staging: v4 (1)" in report.published
    bot = ChatModelRow.objects.get(name="bot")
    assert label_sets(chat_model=bot) == {
        "production": {1: 1.0},
        "canary": {2: 1.0, 4: 3.0},
        "staging": {4: 1.0},
    }
    assert Version.objects.get(chat_model=bot, number=4).variables[0]["required"] is True
    # Importing it again changes nothing.
    assert not services.chat_models_import(data=data).changed


def test_an_export_from_before_variables_and_labels_still_imports(db):
    older = {
        "format": "chatmodel_app.chat_models/1",
        "chat_models": [
            {
                "name": "old",
                "description": "",
                "versions": [
                    {
                        "number": 1,
                        "model": "offline/demo",
                        "system_prompt": "Answer as {{ json }}.",
                        "is_published": True,
                    }
                ],
            }
        ],
    }
    services.chat_models_import(data=older)
    version = Version.objects.get(chat_model__name="old")
    # No declarations: the braces stay text, sent as written.
    assert (version.variables, version.is_published) == ([], True)
    assert ChatModel("old").get_config().system_prompt == "Answer as {{ json }}."


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variables": []}, r"uses \{\{ json \}\}, which is not declared"),
        ({"variables": [{"name": "a b"}]}, "must be an identifier"),
    ],
)
def test_import_checks_declarations_it_is_given(db, change, message):
    data = {
        "chat_models": [
            {
                "name": "new",
                "versions": [{"number": 1, "model": "offline/demo", "system_prompt": "As {{ json }}.", **change}],
            }
        ]
    }
    with pytest.raises(InvalidParams, match=message):
        services.chat_models_import(data=data)
    assert not ChatModelRow.objects.filter(name="new").exists()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"production": {"1": 1}}, "production is the versions' is_published"),
        ({"Bad Name": {"1": 1}}, "lowercase letters"),
        ({"staging": {"1": 0}}, "must be a positive number"),
        ({"staging": {"9": 1}}, "has no version v9"),
        (["staging"], "must be an object"),
    ],
)
def test_import_checks_labels(db, labels, message):
    data = {"chat_models": [{"name": "new", "versions": [{"number": 1, "model": "offline/demo"}], "labels": labels}]}
    with pytest.raises(InvalidParams, match=message):
        services.chat_models_import(data=data)
    assert not ChatModelRow.objects.filter(name="new").exists()
