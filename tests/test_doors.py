"""The same bad input through every front door gets the same error code, and nothing is stored.

Doors: REST (APIClient; the code is in the ``Chatmodel-Error-Code`` header, whatever the body's shape),
the websocket (an ``error`` frame), and Python (``ChatModel``: ``add_messages`` raises, ``run`` returns
an ``LLMResponse`` with ``error_code``).
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chatmodel_app import ChatModel, services
from chatmodel_app.api.errors import ERROR_CODE_HEADER
from chatmodel_app.exceptions import ChatModelError
from chatmodel_app.models import Message, Run
from chatmodel_app.services import feedback
from example_project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def nested_schema(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def tool(parameters: dict) -> dict:
    return {"type": "function", "function": {"name": "f", "parameters": parameters}}


# A run request (REST body, websocket frame, or ChatModel.run's arguments) and the code every door gives.
RUN_CASES = {
    "temperature out of range": ({"temperature": 5}, "invalid_params"),
    "a provider setting": ({"api_base": "http://attacker.example"}, "invalid_params"),
    "a provider key": ({"api_key": "sk-mine"}, "invalid_params"),
    "not a JSON Schema": (
        {"tools": [tool({"type": "object", "properties": {"a": {"type": "nope"}}})]},
        "invalid_params",
    ),
    "a legacy function that is not a JSON Schema": (
        {"functions": [{"name": "g", "parameters": {"type": "object", "properties": {"a": {"minimum": "x"}}}}]},
        "invalid_params",
    ),
    "a schema nested 200 deep": ({"tools": [tool(nested_schema(200))]}, "invalid_params"),
    "NUL in a parameter": ({"user": "a\x00b"}, "invalid_params"),
    "functions not a list": ({"functions": "get_weather"}, "invalid_params"),
}

# One message to add, and the code every door gives.
MESSAGE_CASES = {
    "NUL in content": ({"role": "user", "content": "a\x00b"}, "invalid_messages"),
    "a lone surrogate in content": ({"role": "user", "content": "bad \ud800 text"}, "invalid_messages"),
    "role is a list": ({"role": ["user"], "content": "Hi"}, "invalid_messages"),
    "role is a number": ({"role": 1, "content": "Hi"}, "invalid_messages"),
    "metadata nested 100 deep": (
        {"role": "user", "content": "Hi", "metadata": {"a": nested_list(100)}},
        "invalid_messages",
    ),
    "NUL in a metadata key": ({"role": "user", "content": "Hi", "metadata": {"k\x00": 1}}, "invalid_messages"),
    "metadata too large": ({"role": "user", "content": "Hi", "metadata": {"k": "x" * 200}}, "invalid_messages"),
    "content too long": ({"role": "user", "content": "x" * 101}, "invalid_messages"),
}


@pytest.fixture
def owner(db):
    return User.objects.create_user("owner")


@pytest.fixture
def token(owner):
    return Token.objects.create(user=owner).key


@pytest.fixture
def setup(make_chat_model, owner, settings):
    """A chat model, one session of ``owner`` holding a user message, and small size limits."""
    settings.CHATMODEL_MAX_MESSAGE_CHARS = 100
    chat_model = make_chat_model("door_model")
    session = services.session_create(chat_model=chat_model, user=owner)
    services.messages_add(session=session, messages=[{"role": "user", "content": "Hello"}])
    return session


def rest(token: str, path: str, body: dict):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    # json.dumps escapes a lone surrogate, as any client that can send one must.
    return client.post(path, json.dumps(body), content_type="application/json")


def rest_code(response) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.content)
    return response[ERROR_CODE_HEADER]


@async_to_sync
async def websocket_code(token: str, session_uuid, frame: dict) -> str:
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chatmodel/sessions/{session_uuid}/",
        headers=[(b"authorization", f"Token {token}".encode())],
    )
    connected, code = await communicator.connect()
    assert connected, code
    try:
        await communicator.send_to(text_data=json.dumps({**frame, "request_id": "r1"}))
        event = await communicator.receive_json_from(timeout=10)
        assert (event["type"], event.get("request_id")) == ("error", "r1"), event
        return event["code"]
    finally:
        await communicator.disconnect()


def nothing_stored(session) -> bool:
    return not Run.objects.exists() and Message.objects.filter(session=session).count() == 1


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_a_bad_run_request_gets_the_same_code_at_every_door(setup, token, case):
    body, code = RUN_CASES[case]
    session = setup

    assert rest_code(rest(token, f"/api/sessions/{session.uuid}/run/", body)) == code
    assert websocket_code(token, session.uuid, {"type": "run", "stream": False, **body}) == code
    assert websocket_code(token, session.uuid, {"type": "run", "stream": True, **body}) == code
    python = ChatModel("door_model", session_uuid=str(session.uuid))
    assert python.run(**body).error_code == code
    chunks = list(python.run(stream=True, **body))
    assert chunks[-1].error_code == code
    assert nothing_stored(session)


@pytest.mark.parametrize("case", list(MESSAGE_CASES))
def test_a_bad_message_gets_the_same_code_at_every_door(setup, token, case):
    message, code = MESSAGE_CASES[case]
    session = setup

    assert rest_code(rest(token, f"/api/sessions/{session.uuid}/messages/", {"messages": [message]})) == code
    assert websocket_code(token, session.uuid, {"type": "add_messages", "messages": [message]}) == code
    with pytest.raises(ChatModelError) as raised:
        ChatModel("door_model", session_uuid=str(session.uuid)).add_messages([message])
    assert raised.value.code == code
    assert nothing_stored(session)


def test_a_bad_session_metadata_is_refused_by_rest_and_python(make_chat_model, token):
    make_chat_model("door_model")
    for metadata in ({"k": "a\x00b"}, {"k": nested_list(100)}):
        response = rest(token, "/api/chat-models/door_model/sessions/", {"metadata": metadata})
        assert rest_code(response) == "invalid_params"
        assert "metadata" in response.json()


def test_a_body_over_the_upload_limit_is_refused_with_413(setup, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = rest(
        token, f"/api/sessions/{setup.uuid}/messages/", {"messages": [{"role": "user", "content": "x" * 2000}]}
    )
    assert response.status_code == 413
    assert response.json()["code"] == response[ERROR_CODE_HEADER] == "request_too_large"
    assert nothing_stored(setup)


def test_json_nested_5000_deep_is_a_400_not_a_crash(setup, token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    body = '{"messages": ' + "[" * 5000 + "]" * 5000 + "}"
    response = client.post(f"/api/sessions/{setup.uuid}/messages/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert nothing_stored(setup)


def test_a_nul_in_a_chat_model_name_is_refused_before_any_query(make_chat_model, token):
    make_chat_model("door_model")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    created = client.post("/api/chat-models/door%00model/sessions/", {}, format="json")
    assert (created.status_code, created[ERROR_CODE_HEADER]) == (400, "invalid_params")
    assert "NUL" in str(created.json())


def test_a_lone_surrogate_quoted_back_in_an_error_is_still_a_400(setup, token):
    """DRF's "not a valid choice" quotes the bad value: the error must still encode as UTF-8 (U+FFFD for it)."""
    session = setup
    body = {"response_format": {"type": "bad \ud800"}}
    response = rest(token, f"/api/sessions/{session.uuid}/run/", body)
    assert rest_code(response) == "invalid_params"
    assert "bad \ufffd" in json.dumps(response.json(), ensure_ascii=False)
    assert nothing_stored(session)


def test_a_bad_double_texting_policy_gets_the_same_code_at_every_door(setup, token):
    session = setup
    for policy in ("never", "bad \ud800", 7):
        frame = {"messages": [{"role": "user", "content": "Hi"}], "double_texting": policy}
        response = rest(token, f"/api/sessions/{session.uuid}/messages/", frame)
        assert rest_code(response) == "invalid_params"
        assert "double_texting" in response.content.decode()
        assert websocket_code(token, session.uuid, {"type": "add_messages", **frame}) == "invalid_params"
    assert nothing_stored(session)


def test_a_nul_in_the_idempotency_key_is_refused_by_rest_and_python(setup, token):
    session = setup
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post(
        f"/api/sessions/{session.uuid}/messages/",
        {"messages": [{"role": "user", "content": "Hi"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="key\x00one",
    )
    assert rest_code(response) == "invalid_messages"
    with pytest.raises(ChatModelError) as raised:
        services.messages_add(
            session=session, messages=[{"role": "user", "content": "Hi"}], idempotency_key="key\x00one"
        )
    assert raised.value.code == "invalid_messages"
    assert nothing_stored(session)


@pytest.mark.parametrize(
    ("seq", "code"),
    [(1.5, "invalid_params"), (True, "invalid_params"), ("one", "invalid_params"), (10**30, "message_not_found")],
)
def test_a_bad_message_seq_gets_the_same_code_at_every_door(setup, token, seq, code):
    """Edit, switch and feedback name a message by seq: a float is not silently cut to an integer, and a seq
    past the database's integers is simply no message (never a database error)."""
    session = setup
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    # In a URL path, anything but a stored seq's digits names no message (404), as a malformed uuid names no session.
    base = f"/api/sessions/{session.uuid}/messages/{seq}"
    for response in (
        client.post(f"{base}/edit/", {"content": "Hi"}, format="json"),
        client.post(f"{base}/switch/", {"index": 0}, format="json"),
        client.put(f"{base}/feedback/", {"rating": "up"}, format="json"),
    ):
        assert rest_code(response) == "message_not_found"
    frames = [
        {"type": "edit_message", "seq": seq, "content": "Hi"},
        {"type": "switch_branch", "seq": seq, "index": 0},
        {"type": "feedback", "seq": seq, "rating": "up"},
    ]
    for frame in frames:
        assert websocket_code(token, session.uuid, frame) == code
    for call in (
        lambda: services.message_edit(session=session, seq=seq, content="Hi"),
        lambda: services.branch_switch(session=session, seq=seq, index=0),
        lambda: feedback.feedback_set(session=session, seq=seq, rating="up"),
    ):
        with pytest.raises(ChatModelError) as raised:
            call()
        assert raised.value.code == code
    assert nothing_stored(session)
