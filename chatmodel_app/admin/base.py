"""What the model admins share: URLs by name, uuid search, read-only records, and the fetch-or-404 of a custom page."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.admin import ModelAdmin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils.html import format_html

if TYPE_CHECKING:
    from ..models import Version

    # What the mixins of VersionAdmin are mixed into, so their uses of ModelAdmin's API are checked.
    VersionAdminBase = ModelAdmin[Version]
else:
    VersionAdminBase = object

_M = TypeVar("_M", bound=Model)

CSS = ("chatmodel_app/admin/admin.css",)


def admin_url(name: str, *args: Any) -> str:
    """The URL of one of this app's admin pages, e.g. ``admin_url("version_change", pk)``."""
    return reverse(f"admin:chatmodel_app_{name}", args=args)


def as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def short_uuid(value: uuid.UUID) -> str:
    """The first 8 characters of a uuid (enough to tell rows apart), the whole uuid on hover."""
    return format_html('<span title="{}">{}</span>', value, str(value)[:8])


def search_by_uuid(queryset: QuerySet, term: str, *fields: str) -> QuerySet | None:
    """Rows whose ``fields`` hold the uuid ``term``; None when ``term`` is not a uuid."""
    value = as_uuid(term)
    if value is None:
        return None
    query = Q()
    for name in fields:
        query |= Q(**{name: value})
    return queryset.filter(query)


def object_or_404(model_admin: ModelAdmin[_M], request: HttpRequest, object_id: str) -> _M:
    """The object a custom admin page is about, when it exists and the user may view it."""
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        raise Http404(f"No such {model_admin.opts.verbose_name}.")
    if not model_admin.has_view_permission(request, obj):
        raise PermissionDenied
    return obj


class ReadOnly:
    """Records of what happened: viewable and deletable, never edited or added by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
