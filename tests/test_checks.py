import pytest
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.core.checks import Tags, run_checks
from django.test import override_settings
from django.urls import path

from chatmodel_app.consumers import SessionConsumer
from chatmodel_app.routing import websocket_urlpatterns
from chatmodel_app.ws_auth import ChatModelAuthMiddlewareStack

# Check W002 reads the published versions.
pytestmark = pytest.mark.django_db

# ASGI applications for W003, named by dotted path in ASGI_APPLICATION.
STOCK_ASGI = get_asgi_application()
NO_WEBSOCKET = ProtocolTypeRouter({"http": STOCK_ASGI})
OTHER_ROUTES = ProtocolTypeRouter({"http": STOCK_ASGI, "websocket": URLRouter([])})
ROUTED = ProtocolTypeRouter(
    {
        "http": STOCK_ASGI,
        "websocket": AllowedHostsOriginValidator(ChatModelAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
NESTED = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [path("ws/chatmodel/", URLRouter([path("sessions/<str:session_uuid>/", SessionConsumer.as_asgi())]))]
        )
    }
)
UNDER_A_PREFIX = ProtocolTypeRouter({"websocket": URLRouter([path("chat/", URLRouter(websocket_urlpatterns))])})


def messages(id_, **kwargs):
    return [message for message in run_checks(**kwargs) if message.id == id_]


def ids():
    return {message.id for message in run_checks() if message.id and message.id.startswith("chatmodel_app.")}


def test_defaults_pass():
    with override_settings(DEBUG=True):
        assert ids() == set()


@override_settings(CHATMODEL_TIMEOUT=-1)
def test_e001_bad_timeout():
    [error] = messages("chatmodel_app.E001")
    assert "CHATMODEL_TIMEOUT" in error.hint


@override_settings(CHATMODEL_TIMEOUT=300, CHATMODEL_RUN_LEASE_SECONDS=60)
def test_e002_lease_shorter_than_timeout():
    assert "chatmodel_app.E002" in ids()


@override_settings(CHATMODEL_TIMEOUT=60, CHATMODEL_NUM_RETRIES=2, CHATMODEL_RUN_LEASE_SECONDS=150)
def test_e002_lease_shorter_than_the_retried_call():
    assert "chatmodel_app.E002" in ids()
    # LiteLLM makes up to 2N+1 attempts of a retryable error: 60 s x 5 = 300 s, so a lease of 300 is not enough.
    with override_settings(CHATMODEL_RUN_LEASE_SECONDS=300):
        [error] = messages("chatmodel_app.E002")
        assert "60 x 5 = 300" in error.msg
        assert "above 300" in error.hint
    with override_settings(CHATMODEL_RUN_LEASE_SECONDS=301):
        assert "chatmodel_app.E002" not in ids()


def test_the_default_settings_pass_e002():
    from chatmodel_app.conf import DEFAULTS

    defaults = {name: DEFAULTS[name] for name in ("CHATMODEL_TIMEOUT", "CHATMODEL_NUM_RETRIES")}
    assert defaults == {"CHATMODEL_TIMEOUT": 60.0, "CHATMODEL_NUM_RETRIES": 2}
    with override_settings(**defaults):
        assert "chatmodel_app.E002" not in ids()


@override_settings(CHATMODEL_ALLOWED_PARAMS=["temperature", "api_base"])
def test_e003_callers_may_not_choose_provider_settings():
    [error] = messages("chatmodel_app.E003")
    assert "api_base" in error.msg
    assert error.hint


@override_settings(DEBUG=False, CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}})
def test_w001_in_memory_channel_layer_in_production():
    [warning] = messages("chatmodel_app.W001")
    # The hint is for any project, not only the example one.
    assert "example project" not in warning.hint
    assert "channels_redis.core.RedisChannelLayer" in warning.hint


@override_settings(DEBUG=False, CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}})
def test_w001_silent_with_redis():
    assert "chatmodel_app.W001" not in ids()


# --- W002: provider keys -------------------------------------------------------------------------------------


@pytest.fixture
def no_keys(monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CLOVASTUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def w002_texts():
    return [warning.msg for warning in messages("chatmodel_app.W002")]


@pytest.mark.parametrize(
    ("model", "variable"),
    [
        ("gpt-4o-mini", "OPENAI_API_KEY"),
        ("anthropic/claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
        ("clova/HCX-005", "CLOVASTUDIO_API_KEY"),
    ],
)
def test_w002_names_the_missing_key_of_every_provider(make_chat_model, no_keys, model, variable):
    make_chat_model("assistant", model=model)
    [text] = w002_texts()
    assert model in text and variable in text
    no_keys.setenv(variable, "sk-set-in-the-environment")
    assert w002_texts() == []


def test_w002_covers_fallbacks_and_ignores_drafts(make_chat_model, no_keys):
    make_chat_model("assistant", model="offline/demo", fallbacks=["anthropic/claude-3-5-haiku-latest"])
    make_chat_model("draft", model="gpt-4o-mini", published=False)
    [text] = w002_texts()
    assert "ANTHROPIC_API_KEY" in text


def test_w002_asks_litellm_nothing_for_the_offline_model(make_chat_model, no_keys):
    import chatmodel_app.llm

    def refuse():
        raise AssertionError("litellm was loaded for a check of offline versions")

    make_chat_model("assistant", model="offline/demo")
    no_keys.setattr(chatmodel_app.llm, "get_litellm", refuse)
    assert w002_texts() == []


def test_w002_keyless_local_servers_pass(make_chat_model, no_keys):
    make_chat_model("assistant", model="ollama/llama3.1")
    assert w002_texts() == []


# --- W003: ASGI routing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("application", ["STOCK_ASGI", "NO_WEBSOCKET", "OTHER_ROUTES", "UNDER_A_PREFIX"])
def test_w003_asgi_application_without_the_websocket_route(application):
    with override_settings(ASGI_APPLICATION=f"tests.test_checks.{application}"):
        [warning] = messages("chatmodel_app.W003")
    assert "/ws/chatmodel/sessions/<uuid>/" in warning.msg
    assert "ProtocolTypeRouter" in warning.hint and "websocket_urlpatterns" in warning.hint


@pytest.mark.parametrize(
    "application", ["tests.test_checks.ROUTED", "tests.test_checks.NESTED", "example_project.asgi.application"]
)
def test_w003_silent_when_the_websocket_is_routed(application):
    with override_settings(ASGI_APPLICATION=application):
        assert messages("chatmodel_app.W003") == []


def test_w003_silent_without_asgi_application():
    with override_settings(ASGI_APPLICATION=None):
        assert messages("chatmodel_app.W003") == []


def test_w003_an_asgi_module_that_fails_to_import_is_reported_not_raised():
    with override_settings(ASGI_APPLICATION="tests.no_such_module.application"):
        [warning] = messages("chatmodel_app.W003")
    assert "could not be loaded" in warning.msg and "ModuleNotFoundError" in warning.msg


# --- W004 (deploy): demo logins ------------------------------------------------------------------------------


def deploy_w004():
    return messages("chatmodel_app.W004", tags=[Tags.security], include_deployment_checks=True)


def test_w004_staff_login_with_its_name_as_password_when_debug_is_off():
    User = get_user_model()
    demo = User.objects.create_superuser("demo", password="demo")
    User.objects.create_user("visitor", password="visitor")  # not staff: not a way into the admin
    with override_settings(DEBUG=False):
        [warning] = deploy_w004()
        assert "'demo'" in warning.msg and "changepassword demo" in warning.hint
        # Only with --deploy.
        assert messages("chatmodel_app.W004") == []
    with override_settings(DEBUG=True):
        assert deploy_w004() == []
    demo.set_password("a long and secret passphrase")
    demo.save()
    with override_settings(DEBUG=False):
        assert deploy_w004() == []
