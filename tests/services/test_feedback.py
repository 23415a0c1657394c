"""Feedback on replies through the Python API: given, changed, taken back, validated; and its per-version stats."""

from __future__ import annotations

import pytest

from chatmodel_app import ChatModel
from chatmodel_app.exceptions import InvalidParams, MessageNotFound, SessionNotFound
from chatmodel_app.models import Feedback

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])
    response = session.run()
    assert not response.error
    return session, response.message_seq


def test_give_change_and_take_back(answered):
    session, seq = answered
    given = session.feedback(seq, "up")
    assert given["rating"] == "up" and given["comment"] == ""
    changed = session.feedback(seq, -1, comment="  too short  ")
    assert (changed["rating"], changed["comment"]) == ("down", "too short")
    assert Feedback.objects.count() == 1  # one per message: giving it again changes it
    row = Feedback.objects.get()
    assert row.rating == -1 and row.version.number == 1 and row.message.seq == seq
    assert session.feedback(seq, None) is None
    assert Feedback.objects.count() == 0


@pytest.mark.parametrize("rating", ["sideways", 0, 2, True, 1.5, "", [1]])
def test_bad_ratings_are_refused(answered, rating):
    session, seq = answered
    with pytest.raises(InvalidParams) as caught:
        session.feedback(seq, rating)
    assert caught.value.field == "rating"
    assert Feedback.objects.count() == 0


def test_comment_rules(answered):
    session, seq = answered
    with pytest.raises(InvalidParams) as caught:
        session.feedback(seq, "up", comment="x" * 2001)
    assert caught.value.field == "comment"
    with pytest.raises(InvalidParams):
        session.feedback(seq, "up", comment="nul\x00")
    with pytest.raises(InvalidParams):
        session.feedback(seq, "up", comment=5)
    assert session.feedback(seq, "up", comment="x" * 2000)["comment"] == "x" * 2000


def test_only_assistant_messages_that_exist(answered):
    session, seq = answered
    with pytest.raises(InvalidParams) as caught:
        session.feedback(1, "up")  # the user's own message
    assert caught.value.field == "seq"
    with pytest.raises(MessageNotFound):
        session.feedback(99, "up")
    with pytest.raises(InvalidParams):
        session.feedback("two", "up")


def test_a_session_never_started_has_nothing_to_rate(make_chat_model):
    make_chat_model()
    with pytest.raises(SessionNotFound):
        ChatModel("simple_assistant").feedback(2, "up")


def test_message_pages_carry_the_feedback(answered):
    from chatmodel_app import selectors
    from chatmodel_app.models import Session

    session, seq = answered
    session.feedback(seq, "down", comment="wrong")
    rows, _ = selectors.message_page(session=Session.objects.get(uuid=session.session_uuid))
    shown = {m["seq"]: m.get("feedback") for m in map(selectors.message_json, rows)}
    assert shown[1] is None
    assert shown[seq]["rating"] == "down" and shown[seq]["comment"] == "wrong"


def test_the_admin_shows_feedback_per_version_with_commented_replies(answered, admin_client):
    from django.urls import reverse

    from chatmodel_app.models import ChatModel as ChatModelRow

    session, seq = answered
    session.feedback(seq, "down", comment="Too <b>curt</b>")
    other = ChatModel("simple_assistant")
    other.add_messages([{"role": "user", "content": "Hello again"}])
    other.feedback(other.run().message_seq, "up")
    chat_model = ChatModelRow.objects.get(name="simple_assistant")
    html = admin_client.get(reverse("admin:chatmodel_app_chatmodel_change", args=[chat_model.pk])).content.decode()
    section = html[html.index('id="chatmodel-feedback"') :]
    row = section[section.index('data-feedback-version="1"') :]
    row = row[: row.index("</tr>")]
    cells = [c.split(">", 1)[1].split("<", 1)[0] for c in row.split('<td class="num"')[1:]]
    assert cells == ["1", "1", "2", "50%"]  # up, down, rated, rate
    assert 'data-testid="feedback-comment"' in section
    assert "Too &lt;b&gt;curt&lt;/b&gt;" in section  # escaped, never rendered
    assert "Hello! What can I help you with?" in section  # the reply it was about


def test_the_export_has_each_versions_feedback_and_an_import_ignores_it(answered):
    from chatmodel_app.services import chat_models_export, chat_models_import

    session, seq = answered
    plain = chat_models_export()
    assert "feedback" not in plain["chat_models"][0]["versions"][0]  # none given: the export is as before
    session.feedback(seq, "down", comment="wrong city")
    data = chat_models_export()
    received = data["chat_models"][0]["versions"][0]["feedback"]
    assert (received["up"], received["down"]) == (0, 1)
    assert [(c["rating"], c["comment"], c["reply"]) for c in received["comments"]] == [
        ("down", "wrong city", "Hello! What can I help you with?")
    ]
    report = chat_models_import(data=data)  # the same data back: nothing changes, feedback is not imported
    assert not report.changed
    assert chat_models_import(data=plain).changed is False  # an export without feedback still imports
    assert Feedback.objects.count() == 1
