"""The OpenAPI schema view: this app's endpoints only, with the limits the server checks."""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from ..conf import conf
from .base import ChatModelAPIView


def only_api_endpoints(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """drf-spectacular preprocessing hook: this app's endpoints only, wherever the host mounted them."""
    return [e for e in endpoints if issubclass(getattr(e[3], "cls", object), ChatModelAPIView)]


def schema_states_checked_limits(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the limits input serializers check in code, stated in the schema.

    A client (or schemathesis) reading the schema must not be told a request is valid that the server refuses.
    """
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("in") == "query" and parameter.get("name") == "limit":
                    # Read on each schema request: CHATMODEL_API_MAX_PAGE_SIZE may change with the settings.
                    parameter["schema"]["maximum"] = conf.API_MAX_PAGE_SIZE
    schemas = result.get("components", {}).get("schemas", {})
    if "MessagesAdd" in schemas:
        schemas["MessagesAdd"]["properties"]["messages"]["minItems"] = 1
    if "Run" in schemas:
        schemas["Run"]["properties"]["user"]["minLength"] = 1
    return result


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 document of this API (public: it describes the API, not its data)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    custom_settings = {
        "TITLE": "chatmodel_app API",
        "DESCRIPTION": "Chat models, sessions, messages and runs. Errors and status codes: see the README (REST API).",
        "VERSION": "1",
        # 3.1: full JSON Schema, so each SSE event's JSON can be described (contentSchema).
        "OAS_VERSION": "3.1.0",
        "PREPROCESSING_HOOKS": ["chatmodel_app.api.schema.only_api_endpoints"],
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "chatmodel_app.api.schema.schema_states_checked_limits",
        ],
    }
