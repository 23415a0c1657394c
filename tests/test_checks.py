import pytest
from django.core.checks import run_checks
from django.test import override_settings

# Check W002 reads the published versions.
pytestmark = pytest.mark.django_db


def ids():
    return {message.id for message in run_checks() if message.id and message.id.startswith("chatmodel_app.")}


def test_defaults_pass():
    with override_settings(DEBUG=True):
        assert ids() == set()


@override_settings(CHATMODEL_TIMEOUT=-1)
def test_e001_bad_timeout():
    assert "chatmodel_app.E001" in ids()


@override_settings(CHATMODEL_TIMEOUT=300, CHATMODEL_RUN_LEASE_SECONDS=60)
def test_e002_lease_shorter_than_timeout():
    assert "chatmodel_app.E002" in ids()


@override_settings(CHATMODEL_TIMEOUT=60, CHATMODEL_NUM_RETRIES=2, CHATMODEL_RUN_LEASE_SECONDS=150)
def test_e002_lease_shorter_than_the_retried_call():
    assert "chatmodel_app.E002" in ids()
    with override_settings(CHATMODEL_RUN_LEASE_SECONDS=181):
        assert "chatmodel_app.E002" not in ids()


@override_settings(CHATMODEL_ALLOWED_PARAMS=["temperature", "api_base"])
def test_e003_callers_may_not_choose_provider_settings():
    assert "chatmodel_app.E003" in ids()


@override_settings(DEBUG=False, CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}})
def test_w001_in_memory_channel_layer_in_production():
    assert "chatmodel_app.W001" in ids()


@override_settings(DEBUG=False, CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}})
def test_w001_silent_with_redis():
    assert "chatmodel_app.W001" not in ids()
