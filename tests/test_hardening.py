"""Issue 19 (hardening), each finding on the door where it was found: REST, the websocket, the admin."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import OperationalError
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chatmodel_app import consumers, selectors, services, validation
from chatmodel_app.api import sse
from chatmodel_app.exceptions import InvalidParams
from chatmodel_app.models import Message, Run, Session, Version
from chatmodel_app.routing import websocket_urlpatterns
from chatmodel_app.services import leases
from chatmodel_app.testing import FakeReply, refused_url
from chatmodel_app.ws_auth import ChatModelAuthMiddlewareStack, SameOriginValidator
from example_project.asgi import application

from .admin.helpers import editor_data, errors_of, url

pytestmark = pytest.mark.django_db

RUN_RATE_2 = {"chatmodel_run": "2/minute"}


@pytest.fixture(autouse=True)
def _fresh_throttles(db):
    cache.clear()  # throttle counters live in the cache
    yield
    assert sse.wait_idle(10), "a streamed run was still going at the end of the test"
    cache.clear()


@pytest.fixture
def chat_model(make_chat_model):
    return make_chat_model("simple_assistant")


def _perms(user: User, *codenames: str) -> User:
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="chatmodel_app", codename__in=codenames)
    )
    return User.objects.get(pk=user.pk)  # permissions are cached on the user object


def _client(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _session_with_message(client: APIClient, text: str = "Hello") -> str:
    created = client.post("/api/chat-models/simple_assistant/sessions/", {}, format="json")
    assert created.status_code == 201, created.content
    session_uuid = created.json()["uuid"]
    added = client.post(
        f"/api/sessions/{session_uuid}/messages/", {"messages": [{"role": "user", "content": text}]}, format="json"
    )
    assert added.status_code == 201, added.content
    return session_uuid


def _run(client: APIClient, session_uuid: str, **body):
    return client.post(f"/api/sessions/{session_uuid}/run/", body, format="json")


def _socket(session_uuid, *, token=None, headers=(), app=application) -> WebsocketCommunicator:
    all_headers = list(headers)
    if token is not None:
        all_headers.append((b"authorization", f"Token {token}".encode()))
    return WebsocketCommunicator(app, f"/ws/chatmodel/sessions/{session_uuid}/", headers=all_headers)


async def _until(communicator, *types, timeout=10.0):
    received = []
    while True:
        event = await communicator.receive_json_from(timeout=timeout)
        received.append(event)
        if event["type"] in types:
            return received


# --- 1. no secret in version params, none copied into Run.params --------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"extra_headers": {"Authorization": "Bearer live-secret"}},
        {"extra_headers": {"api-key": "live-secret"}},
        {"extra_headers": {"X-Api-Key": "live-secret"}},
        {"api_key": "live-secret"},
        {"token": "live-secret"},
        {"password": "live-secret"},
        {"access_token": "live-secret"},
        {"extra_body": {"client_secret": "live-secret"}},
    ],
)
def test_version_params_refuse_credentials_in_the_python_api(chat_model, params):
    with pytest.raises(InvalidParams, match="must not hold provider keys"):
        services.version_create(chat_model=chat_model, model="offline/demo", params=params)
    assert chat_model.versions.count() == 1


def test_version_params_keep_what_only_looks_like_a_credential(chat_model):
    params = {"max_tokens": 100, "extra_headers": {"X-Trace": "on"}, "top_p": 0.5}
    version = services.version_create(chat_model=chat_model, model="offline/demo", params=params)
    assert version.params == params


def test_the_admin_editor_refuses_an_authorization_header(admin_client, chat_model):
    v1 = chat_model.versions.get(number=1)
    params = json.dumps({"extra_headers": {"Authorization": "Bearer live-secret"}})
    response = admin_client.post(url("version_change", v1.pk), editor_data(params=params, _save_as_new_version="1"))
    assert response.status_code == 200
    assert "extra_headers.Authorization" in errors_of(response)
    assert chat_model.versions.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_legacy_versions_secret_is_sent_but_never_stored_or_shown(fake_chat_model, fake_llm, admin_client):
    """Params saved before the rule: the provider still gets them, the Run row and the admin page do not."""
    chat_model = fake_chat_model()
    secret = "zz-legacy-secret-31415"
    version = chat_model.versions.get(number=1)
    legacy = {**version.params, "extra_headers": {"X-Api-Key": secret, "X-Trace": "on"}}
    Version.objects.filter(pk=version.pk).update(params=legacy)
    alice = User.objects.create_user("alice")
    client = _client(alice)
    session_uuid = _session_with_message(client)
    response = _run(client, session_uuid)
    assert response.status_code == 200, response.content
    assert fake_llm.requests[-1]["headers"].get("x-api-key") == secret
    run = Run.objects.get(session__uuid=session_uuid)
    assert run.params["extra_headers"] == {"X-Api-Key": validation.REDACTED, "X-Trace": "on"}
    assert secret not in json.dumps(run.params)
    assert secret not in admin_client.get(url("run_change", run.pk)).content.decode()


# --- 3. websocket runs count against the REST run throttle --------------------------------------------------


async def _two_runs_a_minute(settings, *, rest_runs: int) -> tuple[APIClient, str, WebsocketCommunicator]:
    """alice, with a run throttle of 2/minute, ``rest_runs`` REST runs on her session, and a socket on it."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": RUN_RATE_2}
    alice = await database_sync_to_async(User.objects.create_user)("alice")
    client = await database_sync_to_async(_client)(alice)
    session_uuid = await database_sync_to_async(_session_with_message)(client)
    for _ in range(rest_runs):
        assert (await database_sync_to_async(_run)(client, session_uuid)).status_code == 200
    token = await database_sync_to_async(lambda: Token.objects.get(user=alice).key)()
    return client, session_uuid, _socket(session_uuid, token=token)


@pytest.mark.django_db(transaction=True)
async def test_websocket_runs_share_the_rest_run_throttle(chat_model, settings):
    # One run over REST, one over the socket: the limit of two is used up whichever door counted them.
    client, session_uuid, socket = await _two_runs_a_minute(settings, rest_runs=1)
    assert (await socket.connect())[0]
    await socket.send_json_to({"type": "run", "request_id": 1})
    assert (await _until(socket, "run.completed", "run.failed"))[-1]["type"] == "run.completed"
    await socket.send_json_to({"type": "run", "request_id": 2})
    refused = await socket.receive_json_from(timeout=10)
    assert (refused["type"], refused["code"], refused["request_id"]) == ("error", "throttled", 2)
    assert refused["retry_after"] > 0
    throttled = await database_sync_to_async(_run)(client, session_uuid)
    assert throttled.status_code == 429 and throttled.json()["code"] == "throttled"
    runs = await database_sync_to_async(Run.objects.filter(session__uuid=session_uuid).count)()
    assert runs == 2
    await socket.disconnect()


@pytest.fixture
def double_texting_model(make_chat_model):
    return make_chat_model("simple_assistant", double_texting_allowed=["enqueue", "interrupt", "rollback"])


def _hold(session_uuid: str) -> uuid.UUID:
    """Make a run active on the session (its lease held), as a long model call would."""
    session = Session.objects.get(uuid=session_uuid)
    run_uuid = uuid.uuid4()
    Run.objects.create(uuid=run_uuid, session=session, version=session.version, model="offline/demo")
    assert leases.take(session_id=session.pk, run_uuid=run_uuid)
    return run_uuid


@pytest.mark.django_db(transaction=True)
def test_messages_that_would_start_a_run_count_against_the_run_throttle(double_texting_model, settings):
    """Double-texting (enqueue, interrupt, rollback) starts runs: they are runs to the throttle too."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": RUN_RATE_2}
    alice = _client(User.objects.create_user("alice"))
    session_uuid = _session_with_message(alice)
    assert _run(alice, session_uuid).status_code == 200
    assert _run(alice, session_uuid).status_code == 200  # the limit of two is spent
    held = _hold(session_uuid)
    messages = f"/api/sessions/{session_uuid}/messages/"
    for policy in ("enqueue", "interrupt", "rollback"):
        body = {"messages": [{"role": "user", "content": "Again"}], "double_texting": policy}
        refused = alice.post(messages, body, format="json")
        assert (refused.status_code, refused.json()["code"]) == (429, "throttled"), policy
    assert Session.objects.get(uuid=session_uuid).queued == []
    assert Run.objects.get(uuid=held).status == Run.Status.IN_PROGRESS  # not interrupted
    # reject starts no run: refused as busy, not throttled; with no run active, adding messages is no run.
    busy = alice.post(messages, {"messages": [{"role": "user", "content": "Again"}]}, format="json")
    assert busy.status_code == 409
    Session.objects.filter(uuid=session_uuid).update(active_run_uuid=None, lease_expires_at=None)
    body = {"messages": [{"role": "user", "content": "Again"}], "double_texting": "interrupt"}
    assert alice.post(messages, body, format="json").status_code == 201
    assert Message.objects.filter(session__uuid=session_uuid).count() == 4  # Hello, two replies, Again


@pytest.mark.django_db(transaction=True)
async def test_websocket_messages_that_would_start_a_run_count_against_the_run_throttle(double_texting_model, settings):
    _, session_uuid, socket = await _two_runs_a_minute(settings, rest_runs=2)
    await database_sync_to_async(_hold)(session_uuid)
    assert (await socket.connect())[0]
    await _until(socket, "run.snapshot")
    frame = {"type": "add_messages", "messages": [{"role": "user", "content": "Again"}], "double_texting": "enqueue"}
    await socket.send_json_to({**frame, "request_id": 7})
    refused = await socket.receive_json_from(timeout=10)
    assert (refused["type"], refused["code"], refused["request_id"]) == ("error", "throttled", 7)
    assert refused["retry_after"] > 0
    queued = await database_sync_to_async(lambda: Session.objects.get(uuid=session_uuid).queued)()
    assert queued == []
    await socket.disconnect()


# --- 7. reading others' sessions is a permission, not the staff flag -----------------------------------------


def test_the_staff_flag_alone_reads_no_ones_session_over_rest(chat_model):
    alice = User.objects.create_user("alice")
    session_uuid = _session_with_message(_client(alice))
    flag_only = _client(User.objects.create_user("flag", is_staff=True))
    reader = _client(_perms(User.objects.create_user("reader", is_staff=True), "view_session"))
    for path in (f"/api/sessions/{session_uuid}/", f"/api/sessions/{session_uuid}/messages/"):
        assert flag_only.get(path).status_code == 404
        assert reader.get(path).status_code == 200
    assert _run(reader, session_uuid).status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_the_staff_flag_alone_cannot_watch_a_session_over_the_websocket(chat_model):
    owner = await database_sync_to_async(User.objects.create_user)("owner")
    session = await database_sync_to_async(services.session_create)(chat_model=chat_model, user=owner)
    flag_only = await database_sync_to_async(User.objects.create_user)("flag", is_staff=True)
    token = await database_sync_to_async(lambda: Token.objects.create(user=flag_only).key)()
    socket = _socket(session.uuid, token=token)
    assert await socket.connect() == (False, consumers.CLOSE_NOT_FOUND)
    await socket.disconnect()
    await database_sync_to_async(_perms)(flag_only, "view_session")
    socket = _socket(session.uuid, token=token)
    assert (await socket.connect())[0]
    await socket.send_json_to({"type": "run"})
    assert (await socket.receive_json_from(timeout=10))["code"] == "forbidden"
    await socket.disconnect()


def test_the_playground_needs_the_change_permission_to_run_drafts(client, chat_model):
    draft = services.version_create(chat_model=chat_model, system_prompt="Draft.", model="offline/demo")
    viewer = _perms(User.objects.create_user("viewer", password="pw", is_staff=True), "view_version")
    client.force_login(viewer)
    assert client.post(url("version_playground", draft.pk)).status_code == 403
    assert not Session.objects.filter(user=viewer).exists()
    # A playground session made while they could edit is theirs to read, no longer to run, over REST too.
    session = services.session_create(chat_model=chat_model, version=draft, user=viewer, is_playground=True)
    services.messages_add(session=session, messages=[{"role": "user", "content": "Hi"}])
    assert _run(_client(viewer), str(session.uuid)).status_code == 403
    editor = _perms(User.objects.create_user("editor", password="pw", is_staff=True), "view_version", "change_version")
    client.force_login(editor)
    assert client.post(url("version_playground", draft.pk)).status_code == 302
    started = Session.objects.get(user=editor, is_playground=True)
    services.messages_add(session=started, messages=[{"role": "user", "content": "Hi"}])
    assert _run(_client(editor), str(started.uuid)).status_code == 200


# --- 8. the anonymous throttle does not trust X-Forwarded-For -------------------------------------------------


def test_rotating_x_forwarded_for_does_not_escape_the_anonymous_throttle(chat_model, settings):
    settings.CHATMODEL_API_ALLOW_ANONYMOUS = True
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": RUN_RATE_2}
    client = APIClient()
    session_uuid = _session_with_message(client)
    statuses = [
        client.post(
            f"/api/sessions/{session_uuid}/run/", {}, format="json", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}"
        ).status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 429, 429]


def test_with_num_proxies_the_proxys_entry_names_the_client(chat_model, settings):
    settings.CHATMODEL_API_ALLOW_ANONYMOUS = True
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": RUN_RATE_2, "NUM_PROXIES": 1}
    client = APIClient()
    session_uuid = _session_with_message(client)

    def run_as(xff: str) -> int:
        return client.post(
            f"/api/sessions/{session_uuid}/run/", {}, format="json", HTTP_X_FORWARDED_FOR=xff
        ).status_code

    # The one proxy appends the address it saw last; what the client wrote before it is not trusted.
    assert [run_as("6.6.6.6, 10.0.0.1"), run_as("7.7.7.7, 10.0.0.1"), run_as("10.0.0.1")] == [200, 200, 429]
    assert run_as("10.0.0.2") == 200


# --- 9. a bad cursor is a 400 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        base64.b64encode(b"p=abc").decode(),
        base64.b64encode(b"p=2024-13-99&r=1").decode(),
        base64.b64encode(b"o=-1").decode(),
        base64.b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_garbage_cursor_is_a_400(chat_model, cursor):
    alice = _client(User.objects.create_user("alice"))
    _session_with_message(alice)
    response = alice.get("/api/sessions/", {"cursor": cursor})
    assert response.status_code == 400
    assert list(response.json()) == ["cursor"]
    assert response["Chatmodel-Error-Code"] == "invalid_params"


def test_a_real_cursor_still_pages(chat_model):
    alice = _client(User.objects.create_user("alice"))
    made = {_session_with_message(alice) for _ in range(3)}
    first = alice.get("/api/sessions/", {"limit": 2}).json()
    rest = alice.get(first["next"]).json()
    assert {s["uuid"] for s in first["results"] + rest["results"]} == made


# --- 10. the rest --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reserved", [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)])
def test_the_nil_and_max_uuids_are_refused(chat_model, reserved):
    alice = _client(User.objects.create_user("alice"))
    response = alice.post("/api/chat-models/simple_assistant/sessions/", {"uuid": str(reserved)}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["uuid"]
    assert not Session.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_an_open_socket_stops_when_its_token_is_deleted(chat_model, monkeypatch):
    monkeypatch.setattr(consumers, "TOKEN_RECHECK_SECONDS", 0.0)
    owner = await database_sync_to_async(User.objects.create_user)("owner")
    session = await database_sync_to_async(services.session_create)(chat_model=chat_model, user=owner)
    token = await database_sync_to_async(lambda: Token.objects.create(user=owner))()
    socket = _socket(session.uuid, token=token.key)
    assert (await socket.connect())[0]
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=10))["type"] == "pong"
    await database_sync_to_async(token.delete)()
    await socket.send_json_to({"type": "add_messages", "messages": [{"role": "user", "content": "Still here?"}]})
    closed = await socket.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}
    assert not await database_sync_to_async(Message.objects.filter(session=session).exists)()


@pytest.mark.django_db(transaction=True)
async def test_the_token_is_rechecked_at_most_every_few_seconds(chat_model):
    """Cheap: a socket's frames within TOKEN_RECHECK_SECONDS of the last check do not query the token."""
    owner = await database_sync_to_async(User.objects.create_user)("owner")
    session = await database_sync_to_async(services.session_create)(chat_model=chat_model, user=owner)
    token = await database_sync_to_async(lambda: Token.objects.create(user=owner))()
    socket = _socket(session.uuid, token=token.key)
    assert (await socket.connect())[0]
    await database_sync_to_async(token.delete)()
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=10))["type"] == "pong"
    await socket.disconnect()


async def _browser_socket(chat_model, monkeypatch):
    """A browser's socket on its own session, rechecking its login at every frame: logged in with Django's
    test client (a password set), its session cookie on the handshake."""
    monkeypatch.setattr(consumers, "TOKEN_RECHECK_SECONDS", 0.0)
    owner = await database_sync_to_async(User.objects.create_user)("owner", password="first-Passw0rd")
    session = await database_sync_to_async(services.session_create)(chat_model=chat_model, user=owner)
    browser = Client()
    await sync_to_async(browser.force_login)(owner)
    cookie = (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())
    socket = _socket(session.uuid, headers=[cookie])
    assert (await socket.connect())[0]
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=10))["type"] == "pong"
    return owner, session, browser, socket


async def _closed_at_next_frame(socket, session):
    await socket.send_json_to({"type": "add_messages", "messages": [{"role": "user", "content": "Still here?"}]})
    closed = await socket.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}
    assert not await database_sync_to_async(Message.objects.filter(session=session).exists)()


@pytest.mark.django_db(transaction=True)
async def test_an_open_browser_socket_stops_when_its_user_logs_out(chat_model, monkeypatch):
    _owner, session, browser, socket = await _browser_socket(chat_model, monkeypatch)
    await sync_to_async(browser.logout)()
    await _closed_at_next_frame(socket, session)


@pytest.mark.django_db(transaction=True)
async def test_an_open_browser_socket_stops_when_the_password_changes(chat_model, monkeypatch):
    """Django ends a user's other sessions when their password changes; their sockets end too."""
    owner, session, _browser, socket = await _browser_socket(chat_model, monkeypatch)

    def change_password():
        owner.set_password("second-Passw0rd")
        owner.save()

    await database_sync_to_async(change_password)()
    await _closed_at_next_frame(socket, session)


@pytest.mark.django_db(transaction=True)
async def test_an_open_browser_socket_stops_when_its_user_is_deactivated(chat_model, monkeypatch):
    owner, session, _browser, socket = await _browser_socket(chat_model, monkeypatch)
    await database_sync_to_async(User.objects.filter(pk=owner.pk).update)(is_active=False)
    await _closed_at_next_frame(socket, session)


@pytest.mark.django_db(transaction=True)
async def test_a_browser_socket_whose_login_holds_keeps_working_across_rechecks(chat_model, monkeypatch):
    _owner, session, _browser, socket = await _browser_socket(chat_model, monkeypatch)
    await socket.send_json_to({"type": "add_messages", "messages": [{"role": "user", "content": "Hello"}]})
    assert (await _until(socket, "messages.added", "error"))[-1]["type"] == "messages.added"
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=10))["type"] == "pong"
    assert await database_sync_to_async(Message.objects.filter(session=session).count)() == 1
    await socket.disconnect()


def _origin_app():
    return SameOriginValidator(ChatModelAuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("host", "origin", "scheme", "allowed"),
    [
        (b"chat.example.com", b"http://chat.example.com", "ws", True),
        (b"chat.example.com:8000", b"http://chat.example.com:8000", "ws", True),
        (b"chat.example.com", b"https://chat.example.com", "wss", True),
        (b"chat.example.com", b"https://chat.example.com:443", "wss", True),
        (b"chat.example.com", b"http://chat.example.com:8080", "ws", False),  # another port
        (b"chat.example.com", b"https://chat.example.com", "ws", False),  # another scheme
        (b"chat.example.com:8000", b"http://chat.example.com", "ws", False),
        (b"chat.example.com", b"http://evil.example.net", "ws", False),
        (b"evil.example.net", b"http://evil.example.net", "ws", False),  # not an allowed host
        (b"chat.example.com", b"null", "ws", False),
        (b"chat.example.com", b"https://app.example.org", "ws", True),  # CSRF_TRUSTED_ORIGINS
        (b"chat.example.com", b"https://eu.partner.example.org", "ws", True),  # a trusted wildcard
        (b"chat.example.com", b"http://app.example.org", "ws", False),
    ],
)
async def test_the_origin_check_compares_scheme_host_and_port(chat_model, host, origin, scheme, allowed):
    owner = await database_sync_to_async(User.objects.create_user)("owner")
    session = await database_sync_to_async(services.session_create)(chat_model=chat_model, user=owner)
    token = await database_sync_to_async(lambda: Token.objects.create(user=owner).key)()
    with override_settings(
        ALLOWED_HOSTS=["chat.example.com"],
        CSRF_TRUSTED_ORIGINS=["https://app.example.org", "https://*.partner.example.org"],
    ):
        socket = _socket(session.uuid, token=token, headers=[(b"host", host), (b"origin", origin)], app=_origin_app())
        socket.scope["scheme"] = scheme
        connected, _ = await socket.connect()
        await socket.disconnect()
    assert connected is allowed


@pytest.mark.django_db(transaction=True)
async def test_the_origin_check_reads_the_tls_proxy_header_and_lets_non_browsers_in_only_for_any_host(chat_model):
    owner = await database_sync_to_async(User.objects.create_user)("owner")
    session = await database_sync_to_async(services.session_create)(chat_model=chat_model, user=owner)
    token = await database_sync_to_async(lambda: Token.objects.create(user=owner).key)()
    behind_proxy = [(b"host", b"chat.example.com"), (b"origin", b"https://chat.example.com")]
    cases = [
        ({"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")}, [(b"x-forwarded-proto", b"https")], True),
        ({"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")}, [], False),
        ({"SECURE_PROXY_SSL_HEADER": None}, [(b"x-forwarded-proto", b"https")], False),
    ]
    for extra_settings, extra_headers, allowed in cases:
        with override_settings(ALLOWED_HOSTS=["chat.example.com"], **extra_settings):
            socket = _socket(session.uuid, token=token, headers=behind_proxy + extra_headers, app=_origin_app())
            assert (await socket.connect())[0] is allowed, extra_settings
            await socket.disconnect()
    # No Origin: not a browser. Let in only where any host is (as Channels' validator does).
    for hosts, allowed in ((["chat.example.com"], False), (["*"], True)):
        with override_settings(ALLOWED_HOSTS=hosts):
            socket = _socket(session.uuid, token=token, headers=[(b"host", b"chat.example.com")], app=_origin_app())
            assert (await socket.connect())[0] is allowed, hosts
            await socket.disconnect()


def test_a_database_failure_in_a_rest_view_is_a_503_json(chat_model, monkeypatch):
    alice = _client(User.objects.create_user("alice"))
    session_uuid = _session_with_message(alice)

    def dropped(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(selectors, "session_get", dropped)
    response = alice.get(f"/api/sessions/{session_uuid}/")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == response["Chatmodel-Error-Code"] == "database_error"


@pytest.mark.django_db(transaction=True)
def test_a_database_dropped_after_the_reply_is_a_503_storage_error(fake_chat_model, fake_llm, monkeypatch):
    fake_chat_model()
    alice = _client(User.objects.create_user("alice"))
    session_uuid = _session_with_message(alice)

    def dropped(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Message.objects, "create", dropped)
    response = _run(alice, session_uuid)
    assert response.status_code == 503
    assert response.json()["error_code"] == "database_error"


@pytest.mark.django_db(transaction=True)
def test_a_database_dropped_mid_stream_is_a_storage_error_not_a_model_failure(fake_chat_model, fake_llm, monkeypatch):
    fake_chat_model()
    alice = _client(User.objects.create_user("alice"))
    session_uuid = _session_with_message(alice, "one two three four")

    def dropped():
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(leases.keeper, "due", lambda: True)
    monkeypatch.setattr(leases.keeper, "beat", dropped)
    response = _run(alice, session_uuid, stream=True)
    body = b"".join(response.streaming_content).decode()
    failed = [json.loads(line[len("data: ") :]) for line in body.splitlines() if line.startswith("data: ")][-1]
    assert (failed["type"], failed["error"]) == ("run.failed", "database_error")
    assert failed["response"]["error_code"] == "database_error"


@pytest.mark.django_db(transaction=True)
def test_a_cut_whole_reply_is_stream_cut_and_a_refused_connection_is_connection_error(fake_chat_model, fake_llm):
    fake_chat_model()
    alice = _client(User.objects.create_user("alice"))
    session_uuid = _session_with_message(alice)
    fake_llm.enqueue(FakeReply(content="one two three", fault="cut"))
    cut = _run(alice, session_uuid)
    assert (cut.status_code, cut.json()["error_code"]) == (502, "stream_cut")
    version = Version.objects.get(chat_model__name="simple_assistant")
    Version.objects.filter(pk=version.pk).update(params={**version.params, "api_base": refused_url()})
    refused = _run(alice, session_uuid)
    assert (refused.status_code, refused.json()["error_code"]) == (502, "connection_error")


def test_the_schema_states_the_limits_the_server_checks(chat_model, settings):
    settings.CHATMODEL_API_MAX_PAGE_SIZE = 70
    schema = APIClient().get("/api/schema/?format=json").json()
    limits = [
        p["schema"]
        for ops in schema["paths"].values()
        for op in ops.values()
        for p in op.get("parameters", [])
        if p["name"] == "limit"
    ]
    assert limits and all(limit["maximum"] == 70 for limit in limits)
    components = schema["components"]["schemas"]
    assert components["MessagesAdd"]["properties"]["messages"]["minItems"] == 1
    assert components["Run"]["properties"]["user"]["minLength"] == 1
    # And the server refuses just beyond each.
    alice = _client(User.objects.create_user("alice"))
    session_uuid = _session_with_message(alice)
    assert alice.get("/api/sessions/", {"limit": 71}).status_code == 400
    assert alice.get("/api/sessions/", {"limit": 70}).status_code == 200
    assert alice.get(f"/api/sessions/{session_uuid}/messages/", {"limit": 71}).status_code == 400
    added = alice.post(f"/api/sessions/{session_uuid}/messages/", {"messages": []}, format="json")
    assert added.status_code == 400
    assert _run(alice, session_uuid, user="").status_code == 400
