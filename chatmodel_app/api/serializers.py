"""Input serializers check a request's shape; output serializers say (and document) what comes back.

The rules themselves (roles, limits, parameter bounds, tool schemas) live in ``chatmodel_app.validation``;
the input serializers call them so a bad request gets DRF's field errors. Each input serializer names the
error code (``error_code``) its field errors have, so REST reports the code the other doors report.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import validation
from ..conf import conf
from ..exceptions import ChatModelError, InvalidMessages, InvalidParams
from ..models import ChatModel, Session

# --- input -----------------------------------------------------------------------------------------

# JSON bodies are typed: "0.5" is not a number and 1 is not true (DRF's fields would coerce them).
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUID in its canonical 8-4-4-4-12 form only (DRF's also takes integers and bare hex)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or not _UUID.match(data):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class QueryIntegerField(serializers.IntegerField):
    """An integer in a query string: digits only (DRF's also takes "1.0")."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, str) or not data.isascii() or not data.isdigit():
            self.fail("invalid")
        return super().to_internal_value(data)


# Integers stored in PositiveIntegerField columns (seq, version numbers) are at most this.
MAX_DB_INT = 2_147_483_647
_VERSION_NUMBER = re.compile(r"^[1-9][0-9]{0,9}$")


@extend_schema_field(
    {
        "anyOf": [
            {"type": "string", "enum": ["deploy", "latest"]},
            {"type": "integer", "minimum": 1, "maximum": MAX_DB_INT},
            {"type": "string", "pattern": "^[1-9][0-9]{0,9}$"},
            {"type": "string", "pattern": validation.LABEL_NAME.pattern.replace("\\Z", "$")},
        ],
        "default": "deploy",
        "description": '"deploy" (a published version, chosen by A/B ratio), "latest", a version number, or a '
        'label such as "staging" ("production" is what "deploy" serves).',
    }
)
class VersionSpecField(serializers.Field):
    """ "deploy", "latest", a version number (as the Python API's ``version``: 2 or "2") or a label name."""

    default_error_messages = {
        "invalid": 'Expected "deploy", "latest", a version number (1, 2, ...) or a label name such as "staging".'
    }

    def to_internal_value(self, data: Any) -> str | int:
        if isinstance(data, str) and (data in ("deploy", "latest") or validation.is_label_name(data)):
            return data
        if isinstance(data, int) and not isinstance(data, bool) and 1 <= data <= MAX_DB_INT:
            return data
        if isinstance(data, str) and _VERSION_NUMBER.match(data) and int(data) <= MAX_DB_INT:
            return int(data)
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


def field_error(exc: ChatModelError) -> serializers.ValidationError:
    """A domain error as a DRF field error that keeps its code (``errors.py`` reads it back)."""
    return serializers.ValidationError(serializers.ErrorDetail(str(exc), code=exc.code))


class InputSerializer(serializers.Serializer):
    """Base of the input serializers: ``error_code`` is the code of their field errors."""

    error_code = InvalidParams.code


class SessionCreateSerializer(InputSerializer):
    """``POST /api/chat-models/<name>/sessions/``."""

    version = VersionSpecField(required=False, default="deploy")
    metadata = serializers.DictField(required=False, default=dict, help_text="Your own JSON object, kept as is.")
    uuid = StrictUUIDField(
        required=False,
        help_text="Choose the session's uuid (as ChatModel(name, session_uuid) does); "
        "if that session exists and is yours, it is returned with 200.",
    )
    variables = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text='Values of the version\'s prompt variables, e.g. {"customer_name": "Ada"}: text only; every '
        "required variable must be given, and a name the version does not declare is refused (400). Set once: "
        "given again for an existing session, they must be the values it has.",
    )

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        # Stored and sent back on every read, so bounded like a message.
        try:
            validation.json_check(value, "", InvalidParams, max_chars=conf.MAX_MESSAGE_CHARS)
        except ChatModelError as exc:
            raise field_error(exc) from None
        return value


class MessageInSerializer(serializers.Serializer):
    """One message a client adds (documentation only: ``validation.validate_messages`` checks them)."""

    role = serializers.ChoiceField(
        choices=["user", "assistant", "function", "tool"],
        help_text='"user", "function" and "tool" by default; "assistant" when CHATMODEL_API_ALLOWED_ROLES allows it; '
        '"system" never.',
    )
    content = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    name = serializers.RegexField(r"^[a-zA-Z0-9_-]{1,64}$", required=False)
    tool_call_id = serializers.CharField(required=False, max_length=128)
    function_call = serializers.DictField(required=False)
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False)
    metadata = serializers.DictField(required=False)


@extend_schema_field(MessageInSerializer(many=True))
class MessageListField(serializers.ListField):
    """A list of message objects; their rules are the pipeline's."""

    child = serializers.DictField()


@extend_schema_field(OpenApiTypes.STR)
class DoubleTextingField(serializers.Field):
    """A request's double-texting policy, passed on as sent: the service checks it (``double_texting.policy_for``),
    so REST, the websocket and Python refuse the same values with the same code, ``invalid_params``."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


def double_texting_field(help_text: str) -> DoubleTextingField:
    return DoubleTextingField(required=False, allow_null=True, help_text=help_text)


class MessagesAddSerializer(InputSerializer):
    """``POST /api/sessions/<uuid>/messages/``."""

    error_code = InvalidMessages.code

    messages = MessageListField(allow_empty=False)
    double_texting = double_texting_field(
        "What to do if a run is active: reject, enqueue, interrupt or rollback. The version's policy unless "
        "it allows this one (else invalid_params)."
    )


class MessagePageQuerySerializer(InputSerializer):
    """The query of ``GET /api/sessions/<uuid>/messages/``: a cursor on ``seq``."""

    after = QueryIntegerField(
        required=False, min_value=0, max_value=MAX_DB_INT, help_text="Only messages with a larger seq."
    )
    before = QueryIntegerField(
        required=False, min_value=0, max_value=MAX_DB_INT, help_text="Only messages with a smaller seq."
    )
    limit = QueryIntegerField(required=False, min_value=1, help_text="Page size (CHATMODEL_API_PAGE_SIZE).")
    order = serializers.ChoiceField(choices=["asc", "desc"], required=False, default="asc")

    def validate_limit(self, value: int) -> int:
        if value > conf.API_MAX_PAGE_SIZE:
            raise serializers.ValidationError(f"Ensure this value is at most {conf.API_MAX_PAGE_SIZE}.")
        return value


class ConfigQuerySerializer(InputSerializer):
    """The query of ``GET /api/chat-models/<name>/config/``."""

    version = VersionSpecField(required=False, default="deploy")
    session_uuid = StrictUUIDField(
        required=False, help_text="A session of yours: its pinned version, and its messages as message_logs."
    )


class SessionListQuerySerializer(InputSerializer):
    """The query of ``GET /api/sessions/``."""

    chat_model = serializers.CharField(required=False, help_text="Only sessions of this chat model.")
    limit = QueryIntegerField(required=False, min_value=1, help_text="Page size (CHATMODEL_API_PAGE_SIZE).")
    cursor = serializers.CharField(required=False, help_text="From a previous page's next or previous link.")
    archived = serializers.ChoiceField(
        choices=list(validation.conversations.ARCHIVED_FILTERS),
        required=False,
        default="false",
        help_text='"false" (the default): active sessions; "true": archived ones; "all": both.',
    )
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=validation.MAX_SEARCH_CHARS,
        help_text="Search the titles and messages (full-text on PostgreSQL, a substring match elsewhere).",
    )

    def validate_q(self, value: str) -> str:
        try:
            return validation.search_clean(value)
        except ChatModelError as exc:
            raise field_error(exc) from None

    def validate_limit(self, value: int) -> int:
        if value > conf.API_MAX_PAGE_SIZE:
            raise serializers.ValidationError(f"Ensure this value is at most {conf.API_MAX_PAGE_SIZE}.")
        return value


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "required": ["name"],
                    },
                },
                "required": ["type", "function"],
            },
        ]
    }
)
class ToolChoiceField(serializers.Field):
    """OpenAI's ``tool_choice``: "none", "auto", "required", or one named function."""

    default_error_messages = {
        "invalid": 'Expected "none", "auto", "required" or {{"type": "function", "function": {{"name": ...}}}}.'
    }

    def to_internal_value(self, data: Any) -> Any:
        if data in ("none", "auto", "required"):
            return data
        if (
            isinstance(data, dict)
            and set(data) == {"type", "function"}
            and data["type"] == "function"
            and isinstance(data["function"], dict)
            and set(data["function"]) == {"name"}
            and isinstance(data["function"]["name"], str)
            and data["function"]["name"]
        ):
            return data
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        ]
    }
)
class StopField(serializers.Field):
    """A stop sequence, or up to four."""

    default_error_messages = {"invalid": "Expected a string or a list of at most 4 strings."}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            return data
        if isinstance(data, list) and len(data) <= 4 and all(isinstance(s, str) for s in data):
            return data
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


class ResponseFormatSerializer(serializers.Serializer):
    """OpenAI's ``response_format``."""

    type = serializers.ChoiceField(choices=["text", "json_object", "json_schema"])
    json_schema = serializers.DictField(required=False)


def _ranged(name: str) -> StrictFloatField:
    low, high = validation.PARAM_RANGES[name]
    return StrictFloatField(required=False, min_value=low, max_value=high)


class RunSerializer(InputSerializer):
    """``POST /api/sessions/<uuid>/run/``: stream or not, extra functions/tools, and sampling parameters.

    Only the parameters in CHATMODEL_ALLOWED_PARAMS may be given, within the version's bounds; the
    model, its URL and keys are the version's and the server's, never the caller's.
    """

    stream = StrictBooleanField(
        required=False, default=False, help_text="Answer with Server-Sent Events (also when Accept: text/event-stream)."
    )
    functions = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="Legacy function schemas offered on this run."
    )
    tools = serializers.ListField(
        child=serializers.DictField(), required=False, help_text='Tools ({"type": "function", "function": {...}}).'
    )
    temperature = _ranged("temperature")
    top_p = _ranged("top_p")
    max_tokens = StrictIntegerField(
        required=False, min_value=1, help_text="At most the version's own max_tokens, when it sets one."
    )
    max_completion_tokens = StrictIntegerField(required=False, min_value=1)
    presence_penalty = _ranged("presence_penalty")
    frequency_penalty = _ranged("frequency_penalty")
    stop = StopField(required=False)
    seed = StrictIntegerField(required=False, min_value=-(2**63), max_value=2**63 - 1)
    n = StrictIntegerField(required=False, min_value=1, max_value=1, help_text="Always 1: a run stores one reply.")
    tool_choice = ToolChoiceField(required=False)
    parallel_tool_calls = StrictBooleanField(required=False)
    response_format = ResponseFormatSerializer(required=False)
    user = StrictCharField(required=False, max_length=256, help_text="An end-user id passed to the provider.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        raw = self.initial_data if isinstance(self.initial_data, dict) else {}
        refused = validation.params_refused(validation.run_request_params(raw))
        if refused:
            message = "This parameter cannot be set by a caller: the model, its URL and keys are the server's."
            raise serializers.ValidationError(
                {key: [serializers.ErrorDetail(message, code=InvalidParams.code)] for key in refused}
            )
        params = validation.run_request_params(attrs)
        # A parameter the host allowed but this serializer does not know goes through as given.
        params.update({key: raw[key] for key in raw if key in conf.ALLOWED_PARAMS and key not in self.fields})
        try:
            params = validation.validate_run_params(params, self.context["version"])
        except ChatModelError as exc:
            raise serializers.ValidationError({"non_field_errors": field_error(exc).detail}) from None
        functions, tools = attrs.get("functions"), attrs.get("tools")
        try:
            validation.validate_tools(functions, tools)
        except ChatModelError as exc:
            raise serializers.ValidationError({exc.field or "tools": field_error(exc).detail}) from None
        return {"stream": attrs.get("stream", False), "functions": functions, "tools": tools, "params": params}


# --- output ----------------------------------------------------------------------------------------


class ChatModelSerializer(serializers.ModelSerializer):
    """A chat model as listed: its name and which versions exist."""

    latest_version = serializers.SerializerMethodField()
    published_versions = serializers.SerializerMethodField()

    class Meta:
        model = ChatModel
        fields = ["name", "description", "latest_version", "published_versions", "created_at", "updated_at"]

    def get_latest_version(self, obj: ChatModel) -> int | None:
        numbers = [v.number for v in obj.versions.all()]
        return max(numbers) if numbers else None

    def get_published_versions(self, obj: ChatModel) -> list[int]:
        return sorted(v.number for v in obj.versions.all() if v.is_published)


class VersionDetailSerializer(serializers.Serializer):
    model = serializers.CharField()
    uuid = serializers.UUIDField()
    version = serializers.IntegerField()
    name = serializers.CharField()


class ConfigSerializer(serializers.Serializer):
    """``ChatModelConfig``: the system prompt, the version's details, the session's messages."""

    system_prompt = serializers.CharField(allow_blank=True)
    version_detail = VersionDetailSerializer()
    message_logs = serializers.ListField(child=serializers.DictField())


class SessionSerializer(serializers.ModelSerializer):
    """A session: its uuid (the public id), chat model, pinned version and whether a run holds it."""

    chat_model = serializers.CharField(source="chat_model.name")
    version = serializers.IntegerField(source="version.number")
    version_uuid = serializers.UUIDField(source="version.uuid")
    metadata = serializers.DictField()
    variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        help_text="The values of the version's prompt variables, set when the session was created (with defaults).",
    )
    active_run_uuid = serializers.SerializerMethodField()

    class Meta:
        model = Session
        fields = ["uuid", "chat_model", "version", "version_uuid", "metadata", "active_run_uuid", "created_at"]
        fields += ["updated_at"]
        # Prompt variables (docs/prompts.md): the values the session's system prompt is rendered with.
        fields += ["variables"]
        # Named conversations (api/conversations.py).
        fields += ["title", "title_source", "archived", "archived_at", "last_activity_at"]

    archived = serializers.SerializerMethodField(help_text="Archived sessions leave the default list.")
    title_source = serializers.SerializerMethodField(
        help_text='"user" (set by you; never replaced), "auto" (generated after the first exchange) or "".'
    )

    def get_archived(self, obj: Session) -> bool:
        return obj.archived_at is not None

    @extend_schema_field({"type": "string", "enum": ["user", "auto", ""]})
    def get_title_source(self, obj: Session) -> str:
        return obj.title_source if obj.title_source != "pending" else ""

    @extend_schema_field({"type": ["string", "null"], "format": "uuid"})
    def get_active_run_uuid(self, obj: Session) -> str | None:
        from django.utils import timezone

        live = obj.active_run_uuid and obj.lease_expires_at and obj.lease_expires_at > timezone.now()
        return str(obj.active_run_uuid) if live else None


class SessionPageSerializer(serializers.Serializer):
    results = SessionSerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class AlternativesSerializer(serializers.Serializer):
    index = serializers.IntegerField(min_value=0, help_text="Which alternative the path shows, from 0.")
    count = serializers.IntegerField(min_value=2)


class MessageSerializer(serializers.Serializer):
    """A stored message (``selectors.message_json``): keys that are not set are left out."""

    id = serializers.IntegerField()
    seq = serializers.IntegerField()
    role = serializers.ChoiceField(choices=["system", "user", "assistant", "function", "tool"])
    content = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    name = serializers.CharField(required=False)
    tool_call_id = serializers.CharField(required=False)
    function_call = serializers.DictField(required=False)
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False)
    run_id = serializers.UUIDField(allow_null=True)
    token_count = serializers.IntegerField(allow_null=True)
    metadata = serializers.DictField()
    created_at = serializers.DateTimeField(allow_null=True)
    alternatives = AlternativesSerializer(
        required=False,
        allow_null=True,
        help_text='Where the message has alternatives (regenerated or edited): {"index": i, "count": n}, a UI '
        'draws "‹ i+1/n ›". Null where it has none. In pages and paths, not in run events.',
    )
    feedback = serializers.DictField(
        required=False,
        allow_null=True,
        help_text='Pages of messages only: your feedback on a reply, {"rating": "up"|"down", "comment", "updated_at"}.',
    )


class MessagesAddedSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True)
    double_texting = serializers.CharField(
        allow_null=True, required=False, help_text="The policy applied, when a run was active; else absent."
    )
    run = serializers.ChoiceField(
        choices=["queued", "started"],
        allow_null=True,
        required=False,
        help_text="queued: these messages run after the active run; started: a run of them started now.",
    )


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True)
    has_more = serializers.BooleanField()
    next = serializers.URLField(allow_null=True, help_text="The next page in the same order, or null.")


class FunctionCallSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    arguments = serializers.CharField(allow_blank=True, help_text="JSON, as the model wrote it.")


class ToolCallSerializer(serializers.Serializer):
    id = serializers.CharField(allow_blank=True)
    type = serializers.CharField()
    function = FunctionCallSerializer()


class LLMResponseSerializer(serializers.Serializer):
    """``LLMResponse.to_dict()``: the reply, or ``error``/``error_code``/``error_log``."""

    content = serializers.CharField(allow_null=True, allow_blank=True)
    error = serializers.BooleanField()
    error_log = serializers.CharField(allow_null=True, allow_blank=True)
    error_code = serializers.CharField(allow_null=True, help_text="Stable error code, e.g. timeout, rate_limit.")
    function_call = FunctionCallSerializer(allow_null=True)
    tool_calls = ToolCallSerializer(many=True, allow_null=True)
    usage = serializers.DictField(allow_null=True)
    finish_reason = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(
        choices=["in_progress", "completed", "failed", "cancelled", "incomplete"], allow_null=True
    )
    model = serializers.CharField(allow_null=True)
    cost = serializers.FloatField(allow_null=True)
    session_uuid = serializers.UUIDField(allow_null=True)
    run_uuid = serializers.UUIDField(allow_null=True)
    message_id = serializers.IntegerField(allow_null=True)
    message_seq = serializers.IntegerField(allow_null=True)
    version_uuid = serializers.UUIDField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)


class CancelSerializer(serializers.Serializer):
    cancel_requested = serializers.BooleanField(help_text="False when no run was active.")
    run_uuid = serializers.UUIDField(allow_null=True)
    status = serializers.CharField(allow_null=True, help_text="The run's status when the cancel was asked.")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
