"""Admin forms: the version editor and the publish (A/B ratio) form. The rules live in ``validation``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput

from ..exceptions import InvalidParams
from ..models import ChatModel, Version
from ..validation import check_truncation, placeholders_check, version_field_clean

_CODE = {"class": "chatmodel-code", "spellcheck": "false", "autocapitalize": "off", "autocomplete": "off"}

TOOLS_EXAMPLE = """[
  {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
      "type": "object",
      "properties": {"location": {"type": "string"}},
      "required": ["location"]
    }
  }
]"""


class JSONTextField(forms.JSONField):
    """JSON in a monospace text area, shown indented; a syntax error says where it is."""

    def __init__(self, *, rows: int = 8, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={**_CODE, "rows": rows}))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        if value is None or value == []:
            return ""  # so the placeholder shows an example (and never the literal null)
        return json.dumps(value, ensure_ascii=False, indent=2)

    def has_changed(self, initial: Any, data: Any) -> bool:
        if data in self.empty_values and initial in (None, [], {}):
            return False
        return super().has_changed(initial, data)

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except ValidationError:
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    f"This is not valid JSON: {exc.msg.lower()} at line {exc.lineno}, column {exc.colno}. "
                    "(Keys and strings take double quotes; no trailing commas.)",
                    code="invalid",
                ) from None
            raise


class ListTextField(forms.Field):
    """A list of strings typed as text: split on ``separator``, blanks dropped."""

    def __init__(self, *, separator: str = ",", **kwargs: Any) -> None:
        self.separator = separator
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ("\n" if self.separator == "\n" else ", ").join(value)
        return value

    def to_python(self, value: Any) -> list[str]:
        text = "" if value in self.empty_values else str(value)
        return [part.strip() for part in text.split(self.separator) if part.strip()]


def _service_errors(clean, value: Any) -> Any:
    """Run a shared validator; its InvalidParams becomes the field's error."""
    try:
        return clean(value)
    except InvalidParams as exc:
        raise ValidationError(str(exc), code=exc.code) from None


class VersionForm(forms.ModelForm):
    """The version editor: system prompt, model, params and tools, with errors a person understands."""

    # A new version with no version to start from gets the model's defaults, not null.
    params = JSONTextField(
        required=False,
        initial=dict,
        rows=6,
        help_text='A JSON object of sampling parameters, e.g. {"temperature": 0.7, "max_tokens": 512, "top_p": 1}. '
        "Provider keys are never stored here: they come from the server's environment.",
    )
    tools = JSONTextField(
        required=False,
        initial=list,
        rows=12,
        help_text="A JSON list of function schemas (OpenAI shape: name, description, parameters), offered to the "
        'model on every run. Bare schemas and {"type": "function", "function": {...}} both work.',
    )
    variables = JSONTextField(
        required=False,
        initial=list,
        rows=6,
        help_text='Prompt variables the system prompt uses as {{ name }}: a JSON list such as [{"name": '
        '"customer_name", "required": true, "description": "Who we talk to"}, {"name": "tone", "default": "warm"}]. '
        "Sessions give the values when they start; nothing else in the prompt is a template.",
    )
    tags = ListTextField(help_text="Comma-separated labels, e.g. 'formal, experiment-3'.")
    fallbacks = ListTextField(
        separator="\n",
        widget=forms.Textarea(attrs={**_CODE, "rows": 3}),
        help_text="Model strings tried in order when the model fails, one a line.",
    )

    class Meta:
        model = Version
        fields = [
            "chat_model",
            "model",
            "system_prompt",
            "variables",
            "params",
            "tools",
            "truncation",
            "truncation_last_messages",
            "context_window",
            "summary_model",
            "fallbacks",
            "memo",
            "tags",
        ]
        widgets = {
            "system_prompt": forms.Textarea(attrs={**_CODE, "rows": 24, "class": "chatmodel-code chatmodel-prompt"}),
            "model": forms.TextInput(
                attrs={"list": "chatmodel-known-models", "autocomplete": "off", "class": "vTextField"}
            ),
            "summary_model": forms.TextInput(
                attrs={"list": "chatmodel-known-models", "autocomplete": "off", "class": "vTextField"}
            ),
            "memo": forms.Textarea(attrs={"rows": 2}),
        }
        help_texts = {
            "system_prompt": "What the model is told before every conversation.",
            "memo": "What changed in this version, and why.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "tools" in self.fields:
            self.fields["tools"].widget.attrs["placeholder"] = TOOLS_EXAMPLE

    def _field(self, name: str) -> Any:
        return _service_errors(lambda value: version_field_clean(name, value), self.cleaned_data.get(name))

    def clean_model(self) -> str:
        return self._field("model")

    def clean_params(self) -> dict[str, Any]:
        return self._field("params")

    def clean_tools(self) -> list[dict[str, Any]]:
        return self._field("tools")

    def clean_summary_model(self) -> str:
        return self._field("summary_model")

    def clean_variables(self) -> list[dict[str, Any]]:
        return self._field("variables")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        try:
            check_truncation(data.get("truncation"), data.get("truncation_last_messages"))
        except InvalidParams:
            # The shared rule, in the words of the field it is about.
            self.add_error("truncation_last_messages", "Say how many of the newest messages to keep.")
        if "system_prompt" in data and "variables" in data:
            try:
                placeholders_check(data["system_prompt"] or "", data["variables"] or [])
            except InvalidParams as exc:
                self.add_error("variables", str(exc))
        return data


class PublishForm(forms.Form):
    """Publish the chosen versions; a published version of the same chat model may be kept for an A/B test.

    For every chosen version there is a ratio field ``ratio_<pk>`` (blank: 1); for every other
    published version of those chat models a ``keep_<pk>`` checkbox and its ratio. What is
    chosen or kept becomes the chat model's published set; the rest is unpublished.
    """

    def __init__(self, *args: Any, chosen: Iterable[Version], published: Iterable[Version], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chosen = list(chosen)
        chosen_pks = {v.pk for v in self.chosen}
        self.others = [v for v in published if v.pk not in chosen_pks]
        for version in self.chosen:
            self.fields[f"ratio_{version.pk}"] = self._ratio_field(version, required=False)
        for version in self.others:
            self.fields[f"keep_{version.pk}"] = forms.BooleanField(
                required=False, label=f"Keep serving {version} (A/B test)"
            )
            self.fields[f"ratio_{version.pk}"] = self._ratio_field(version, required=False)

    @staticmethod
    def _ratio_field(version: Version, *, required: bool) -> forms.FloatField:
        return forms.FloatField(
            required=required,
            min_value=0.0,
            initial=version.ratio if version.is_published else 1.0,
            label=f"A/B ratio of {version}",
            widget=forms.NumberInput(attrs={"step": "any", "min": "0", "class": "chatmodel-ratio"}),
        )

    def groups(self) -> list[tuple[ChatModel, list[dict[str, Any]]]]:
        """Per chat model, its rows: version, whether it is chosen, and its bound fields."""
        by_model: dict[int, tuple[ChatModel, list[dict[str, Any]]]] = {}
        for version in [*self.chosen, *self.others]:
            _, rows = by_model.setdefault(version.chat_model_id, (version.chat_model, []))
            rows.append(
                {
                    "version": version,
                    "chosen": version in self.chosen,
                    "ratio": self[f"ratio_{version.pk}"],
                    "keep": None if version in self.chosen else self[f"keep_{version.pk}"],
                }
            )
        return sorted(by_model.values(), key=lambda group: group[0].name)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        for version in [*self.chosen, *self.others]:
            key = f"ratio_{version.pk}"
            in_set = version in self.chosen or data.get(f"keep_{version.pk}")
            if not in_set or key in self.errors:
                continue
            ratio = data.get(key)
            if ratio is None:
                if version in self.chosen:
                    data[key] = 1.0
                    continue
                self.add_error(key, f"Give {version} an A/B ratio to keep it published.")
            elif ratio <= 0:
                self.add_error(key, "An A/B ratio must be more than 0 (to stop serving a version, leave it out).")
        return data

    def ratios(self) -> list[tuple[ChatModel, dict[int, float]]]:
        """Per chat model, the versions to publish (number -> ratio); call after is_valid()."""
        out: dict[int, tuple[ChatModel, dict[int, float]]] = {}
        for version in [*self.chosen, *self.others]:
            if version in self.chosen or self.cleaned_data.get(f"keep_{version.pk}"):
                _, ratios = out.setdefault(version.chat_model_id, (version.chat_model, {}))
                ratios[version.number] = self.cleaned_data[f"ratio_{version.pk}"]
        return sorted(out.values(), key=lambda group: group[0].name)
