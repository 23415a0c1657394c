"""Who may see or change a session (``chatmodel_app.access``): the one rule of REST and the websocket."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User

from chatmodel_app import services
from chatmodel_app.access import session_access
from chatmodel_app.models import Session

pytestmark = pytest.mark.django_db


def _with_perms(user, *codenames):
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="chatmodel_app", codename__in=codenames)
    )
    return User.objects.get(pk=user.pk)  # a fresh object: permissions are cached on the user


@pytest.fixture
def users(db):
    return {
        "owner": User.objects.create_user("owner"),
        "other": User.objects.create_user("other"),
        # Issue 19 item 7: reading others' sessions is the view_session permission, not the staff flag.
        "staff": _with_perms(User.objects.create_user("staff", is_staff=True), "view_session"),
        "flag_only": User.objects.create_user("flag-only", is_staff=True),
        "root": User.objects.create_user("root", is_superuser=True),
    }


@pytest.fixture
def chat_model(make_chat_model):
    return make_chat_model("simple_assistant")


def test_the_owner_writes_staff_read_others_see_nothing(chat_model, users):
    session = services.session_create(chat_model=chat_model, user=users["owner"])
    assert session_access(users["owner"], session) == "write"
    assert session_access(users["staff"], session) == "read"
    assert session_access(users["root"], session) == "read"
    assert session_access(users["other"], session) is None
    assert session_access(users["flag_only"], session) is None
    assert session_access(AnonymousUser(), session) is None
    assert session_access(None, session) is None


def test_the_view_session_permission_reads_without_the_staff_flag(chat_model, users):
    session = services.session_create(chat_model=chat_model, user=users["owner"])
    reader = _with_perms(User.objects.create_user("auditor"), "view_session")
    assert session_access(reader, session) == "read"


def test_a_playground_session_runs_only_while_its_owner_may_change_versions(chat_model, users):
    """Issue 19 item 7: a playground runs drafts at the server's cost; view_version alone must not do that."""
    editor = _with_perms(User.objects.create_user("editor", is_staff=True), "view_version", "change_version")
    viewer = _with_perms(User.objects.create_user("viewer", is_staff=True), "view_version")
    for user, expected in ((editor, "write"), (viewer, "read"), (users["root"], "write")):
        session = services.session_create(chat_model=chat_model, user=user, is_playground=True)
        assert session_access(user, session) == expected, user


def test_sessions_without_a_user_are_staff_only_unless_anonymous_access_is_on(chat_model, users, settings):
    session = services.session_create(chat_model=chat_model)
    assert session_access(users["other"], session) is None
    assert session_access(AnonymousUser(), session) is None
    assert session_access(users["flag_only"], session) is None
    assert session_access(users["staff"], session) == "read"
    settings.CHATMODEL_API_ALLOW_ANONYMOUS = True
    assert session_access(AnonymousUser(), session) == "write"
    assert session_access(users["other"], session) == "write"
    # A user's own session stays theirs even then.
    owned = services.session_create(chat_model=chat_model, user=users["owner"])
    assert session_access(AnonymousUser(), owned) is None


def test_playground_sessions_are_never_open_to_anonymous_callers(chat_model, users, settings):
    settings.CHATMODEL_API_ALLOW_ANONYMOUS = True
    session = services.session_create(chat_model=chat_model)
    Session.objects.filter(pk=session.pk).update(is_playground=True)
    session.refresh_from_db()
    assert session_access(AnonymousUser(), session) is None
    assert session_access(users["staff"], session) == "read"


def test_the_rest_layer_still_exports_the_rule():
    from chatmodel_app.api import permissions

    assert permissions.session_access is session_access
