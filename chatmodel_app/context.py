"""Which history goes to the model: the system prompt, the session's summary, and the newest messages that fit.

One entry point, ``context_select``, reached by every front door through ``services.run_start``:

* the budget is the model's max input tokens minus the reply's reserve, the system prompt and the
  tool schemas (``input_budget``);
* the session's tail is read newest first over the ``(session, seq)`` unique index: light columns
  (seq, role, token count, call ids) in a page sized so it covers the whole window, then the text of
  just the rows that are sent. A run reads O(window) rows, whatever the session's length;
* an assistant message with tool calls goes with all its results or not at all, and a result never
  goes without its call;
* each version picks a strategy: ``auto`` (the newest that fit), ``last_messages`` (at most N) or
  ``summary`` (what falls out of the window is condensed into ``Session.summary``; the model call
  that writes it is ``services.summary_refresh``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.models import TextField
from django.db.models.functions import Cast

from . import llm
from .conf import conf
from .exceptions import ContextTooLong, InvalidMessages
from .llm.messages import RESULT_ROLES
from .models import Message, Session, Version

# Tokens a message costs beyond its text: role and separators (litellm counts 3 + the role).
FRAMING = 4
# Tokens providers add to prime the reply.
REPLY_PRIMING = 3
SUMMARY_HEADER = "Summary of the earlier conversation:"

# Light rows (no text) per read. The first read covers the whole window when messages average
# _TYPICAL tokens or more (nearly always: framing alone is 4); later reads are sized by what the rows
# read so far cost, never by the session's length.
_TYPICAL = 8
_PAGE_MIN = 50
_PAGE_MAX = 5000
_LIGHT = ("seq", "role", "token_count", "name", "tool_call_id")
_FULL = ("seq", "role", "content", "name", "tool_call_id", "token_count")
_JSON = ("tool_calls", "function_call")
_APP_PARAMS = frozenset({"api_base", "context_window", "api_key"})


# --- token accounting ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _text_tokens(model: str, text: str) -> int:
    return llm.count_tokens(model, text=text)


@functools.lru_cache(maxsize=64)
def _tools_tokens(model: str, tools_json: str) -> int:
    return llm.count_tokens(model, tools=json.loads(tools_json))


def text_tokens(model: str, text: str) -> int:
    """Tokens in a text that is sent on every run (system prompt, summary): cached per model and text."""
    return _text_tokens(model, text) if text else 0


def tools_tokens(model: str, tools: Sequence[Mapping[str, Any]]) -> int:
    """Tokens the tool schemas cost in every request."""
    return _tools_tokens(model, json.dumps(list(tools), sort_keys=True)) if tools else 0


def count_content(model: str, message: Mapping[str, Any]) -> int:
    """Tokens of a message's text alone."""
    text = message.get("content") or ""
    return llm.count_tokens(model, text=text) if text else 0


def message_tokens(model: str, message: Mapping[str, Any], *, content_tokens: int | None = None) -> int:
    """Tokens one message costs in a prompt: its text, name, call id and tool calls, plus framing.

    ``content_tokens`` is the text's count when already known (add_messages counts the text before
    it gives results their call ids).
    """
    if content_tokens is None:
        content_tokens = count_content(model, message)
    calls = message.get("tool_calls") or None
    if not calls and message.get("function_call"):
        calls = [{"function": message["function_call"]}]
    parts = [message.get("name") or "", message.get("tool_call_id") or "", json.dumps(calls) if calls else ""]
    meta = " ".join(p for p in parts if p)
    return FRAMING + content_tokens + (llm.count_tokens(model, text=meta) if meta else 0)


def _known_window(model: str) -> int:
    # Not cached: model info can be registered with LiteLLM after start-up (provider profiles).
    return llm.context_window(model, 0)


def context_window(version: Version) -> int:
    """Max input tokens: the version's override, else what LiteLLM knows, else CHATMODEL_DEFAULT_CONTEXT_WINDOW."""
    return int(version.context_window or _known_window(version.model) or conf.DEFAULT_CONTEXT_WINDOW)


def reply_reserve(params: Mapping[str, Any]) -> int:
    """Tokens kept free for the reply: the request's max_(completion_)tokens, else CHATMODEL_DEFAULT_MAX_TOKENS."""
    return int(params.get("max_completion_tokens") or params.get("max_tokens") or conf.DEFAULT_MAX_TOKENS)


def input_budget(version: Version, *, system_tokens: int, tools_tokens: int, max_tokens: int | None) -> int:
    """Tokens left for history: context window - reply reserve - system prompt - tools - reply priming."""
    reserve = max_tokens or version.params.get("max_tokens") or conf.DEFAULT_MAX_TOKENS
    return context_window(version) - int(reserve) - system_tokens - tools_tokens - REPLY_PRIMING


# --- the selection ------------------------------------------------------------------------------


@dataclass
class Unit:
    """Messages that go together or not at all: one message, or a call followed by all its results."""

    seqs: list[int]
    costs: list[int]

    @property
    def tokens(self) -> int:
        """What the unit costs."""
        return sum(self.costs)


@dataclass
class Selection:
    """What a run sends besides the system prompt and tools, and what it costs."""

    messages: list[dict[str, Any]] = field(default_factory=list)  # stored form, oldest first
    first_seq: int | None = None
    last_seq: int | None = None
    tokens: int = 0  # the messages' tokens
    budget: int = 0  # tokens for the summary and the messages
    overhead: int = 0  # system prompt, tools and reply priming
    # Older messages (after the summary's end) were left out.
    truncated: bool = False
    units: list[Unit] = field(default_factory=list)  # oldest first
    # How many of the newest units fit in the share of the window a summary run keeps verbatim.
    keep: int = 0
    summary: str = ""
    summary_tokens: int = 0
    summary_until_seq: int | None = None
    # Strategy "summary": condense messages in (summary_until_seq, summarise_upto] before sending.
    summarise_upto: int | None = None

    @property
    def count(self) -> int:
        """Messages sent."""
        return len(self.messages)

    @property
    def prompt_tokens(self) -> int:
        """Estimated tokens of the whole request: system prompt, tools, summary, messages."""
        return self.overhead + self.summary_tokens + self.tokens

    @property
    def used_summary(self) -> bool:
        """Whether the summary is sent."""
        return bool(self.summary)

    def drop_oldest(self, n: int) -> None:
        """Leave out the ``n`` oldest units."""
        if n <= 0:
            return
        gone = {seq for unit in self.units[:n] for seq in unit.seqs}
        self.units = self.units[n:]
        self.messages = [m for m in self.messages if m["seq"] not in gone]
        self.tokens = sum(unit.tokens for unit in self.units)
        self.first_seq = self.messages[0]["seq"] if self.messages else None
        self.last_seq = self.messages[-1]["seq"] if self.messages else None
        self.keep = min(self.keep, len(self.units))

    def set_summary(self, text: str, tokens: int) -> None:
        """Send ``text`` as the summary; then leave out the oldest messages until it all fits."""
        self.summary, self.summary_tokens = text, tokens if text else 0
        while self.summary_tokens + self.tokens > self.budget and len(self.units) > 1:
            self.drop_oldest(1)
        if self.summary_tokens + self.tokens > self.budget:
            self.summary, self.summary_tokens = "", 0


def summary_message(text: str) -> dict[str, str]:
    """The summary as the system message sent right after the system prompt."""
    return {"role": "system", "content": f"{SUMMARY_HEADER}\n{text}"}


def summary_tokens(model: str, text: str) -> int:
    """Tokens the summary message costs."""
    return text_tokens(model, summary_message(text)["content"]) + FRAMING if text else 0


def context_select(
    *, session: Session, version: Version, tools: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> Selection:
    """The history a run sends, by the version's strategy; raises ContextTooLong or InvalidMessages.

    With strategy ``summary`` the result may ask for a summary (``summarise_upto``): the caller
    (``services.summary_refresh``) writes it, then calls ``set_summary`` and ``drop_oldest``.
    """
    model = version.model
    system = text_tokens(model, version.system_prompt) + FRAMING if version.system_prompt else 0
    tool_cost = tools_tokens(model, tools)
    budget = input_budget(version, system_tokens=system, tools_tokens=tool_cost, max_tokens=reply_reserve(params))
    if budget <= 0:
        raise ContextTooLong(
            f"The system prompt ({system} tokens), the tools ({tool_cost}) and the reply's reserve "
            f"({reply_reserve(params)}) already fill the model's context window ({context_window(version)} tokens). "
            "Shorten the prompt, lower max_tokens or raise the version's context_window."
        )
    if version.truncation == "summary":
        selection = _select_with_summary(session=session, version=version, budget=budget)
    else:
        n = version.truncation_last_messages if version.truncation == "last_messages" else None
        selection = select_history(session=session, version=version, budget=budget, max_messages=n or None)
    selection.budget = budget
    selection.overhead = system + tool_cost + REPLY_PRIMING
    return selection


def _select_with_summary(*, session: Session, version: Version, budget: int) -> Selection:
    summary, until = Session.objects.filter(pk=session.pk).values_list("summary", "summary_until_seq").get()
    cost = summary_tokens(version.model, summary)
    # The summary's room is kept even before there is one, so the window does not shrink when it appears.
    room = max(cost, conf.SUMMARY_MAX_TOKENS + text_tokens(version.model, SUMMARY_HEADER) + FRAMING)
    history = budget - room
    keep = max(1, int(history * conf.SUMMARY_KEEP_RATIO))
    selection = select_history(session=session, version=version, budget=history, after_seq=until, keep_tokens=keep)
    selection.summary, selection.summary_tokens, selection.summary_until_seq = summary, cost, until
    if selection.truncated:
        # Condense all but the newest ``keep`` tokens: the summary then runs once per that many new
        # tokens, not on every turn, and what stays verbatim follows the summary with no gap.
        kept = selection.units[len(selection.units) - selection.keep]
        selection.summarise_upto = kept.seqs[0] - 1
    return selection


def select_history(
    *,
    session: Session,
    version: Version,
    budget: int,
    after_seq: int | None = None,
    max_messages: int | None = None,
    keep_tokens: int | None = None,
) -> Selection:
    """The newest messages (after ``after_seq``) that fit ``budget`` tokens, each tool call with all its results.

    ``max_messages`` caps the count (the newest turn is always whole). Raises ContextTooLong when not
    even the newest turn fits, InvalidMessages when the newest call still waits for its result.
    """
    rows = _light_rows(session, model=version.model, budget=budget, after_seq=after_seq, max_messages=max_messages)
    units, truncated, fixes = choose_units(rows, budget=budget, max_messages=max_messages)
    if not units:
        if truncated:
            raise ContextTooLong(
                f"The newest message does not fit the model's context window: {budget} tokens are left for history "
                "after the system prompt, tools, the reply's reserve and any summary. Shorten the message, lower "
                "max_tokens or raise the version's context_window."
            )
        return Selection(budget=budget)
    units.reverse()
    keep = len(units)
    if keep_tokens is not None:
        kept_tokens, keep = 0, 0
        for unit in reversed(units):
            if keep and kept_tokens + unit.tokens > keep_tokens:
                break
            kept_tokens += unit.tokens
            keep += 1
    seqs = [seq for unit in units for seq in unit.seqs]
    costs = {seq: cost for unit in units for seq, cost in zip(unit.seqs, unit.costs, strict=True)}
    full = _full_rows(session, seqs)
    messages = [{**full[seq], "token_count": costs[seq], **fixes.get(seq, {})} for seq in seqs]
    return Selection(
        messages=messages,
        first_seq=seqs[0],
        last_seq=seqs[-1],
        tokens=sum(unit.tokens for unit in units),
        budget=budget,
        truncated=truncated,
        units=units,
        keep=keep,
    )


def choose_units(
    rows: Iterable[Mapping[str, Any]], *, budget: int, max_messages: int | None = None
) -> tuple[list[Unit], bool, dict[int, dict[str, Any]]]:
    """Walk light rows newest first; return the units that fit (newest first), whether older ones were
    left out, and per-seq fixes (ids given to legacy calls and to results that named none).

    Results that answer no call (imported or hand-made rows; add_messages refuses them) are left out.
    """
    units: list[Unit] = []
    fixes: dict[int, dict[str, Any]] = {}
    used = count = 0
    results: dict[str, Mapping[str, Any]] = {}  # results by the call id they answer, whose call is older
    loose: list[Mapping[str, Any]] = []  # results naming no call id (legacy "function" turns), newest first
    truncated = False
    for row in rows:
        if row["tool_calls"] is None and row["function_call"] is None and row["role"] not in RESULT_ROLES:
            # The common case, a plain turn: one message, one unit.
            results, loose = {}, []
            cost = row["token_count"]
            if used + cost > budget or (max_messages is not None and units and count + 1 > max_messages):
                truncated = True
                break
            units.append(Unit(seqs=[row["seq"]], costs=[cost]))
            used += cost
            count += 1
            continue
        if row["role"] in RESULT_ROLES:
            if row["tool_call_id"]:
                results[row["tool_call_id"]] = row  # walking back, the oldest of duplicates wins
            else:
                loose.append(row)
            continue
        calls = _calls(row, fixes)
        if calls:
            answers, missing = _answers(calls, results, loose, fixes)
            results, loose = {}, []
            if missing:
                if not units:
                    raise InvalidMessages(
                        "the model's function call is waiting for its result: add a function/tool message answering "
                        f"{', '.join(missing)} before running."
                    )
                continue  # an old call nobody answered: providers reject it, so it is left out
            members = [row, *answers]
        else:
            results, loose = {}, []  # results answering no call here cannot be sent alone
            members = [row]
        costs = [int(m["token_count"]) for m in members]
        cost = sum(costs)
        if used + cost > budget or (max_messages is not None and units and count + len(members) > max_messages):
            truncated = True
            break
        units.append(Unit(seqs=[m["seq"] for m in members], costs=costs))
        used += cost
        count += len(members)
    return units, truncated, fixes


def _calls(row: Mapping[str, Any], fixes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """An assistant row's calls in the modern form; legacy and id-less calls get an id from their seq."""
    if row["role"] != "assistant":
        return []
    calls = row["tool_calls"]
    if not calls and row["function_call"]:
        calls = [{"id": "", "type": "function", "function": row["function_call"]}]
    if not calls:
        return []
    if all(c.get("id") for c in calls):
        return calls
    calls = [
        {"id": c.get("id") or f"call_{row['seq']}_{n}", "type": "function", "function": c["function"]}
        for n, c in enumerate(calls)
    ]
    fixes[row["seq"]] = {"tool_calls": calls}
    return calls


def _answers(
    calls: list[dict[str, Any]],
    results: dict[str, Mapping[str, Any]],
    loose: list[Mapping[str, Any]],
    fixes: dict[int, dict[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The results answering the calls (in seq order), and the ids of calls left unanswered."""
    answers = {c["id"]: results[c["id"]] for c in calls if c["id"] in results}
    # A result with no id answers the call of its name, else the oldest open one (as add_messages does).
    for row in reversed(loose):
        open_calls = [c for c in calls if c["id"] not in answers]
        if not open_calls:
            break
        named = [c for c in open_calls if row["name"] and c["function"].get("name") == row["name"]]
        call = (named or open_calls)[0]
        answers[call["id"]] = row
        fixes[row["seq"]] = {"tool_call_id": call["id"], "name": row["name"] or call["function"].get("name", "")}
    missing = [c["id"] for c in calls if c["id"] not in answers]
    return sorted(answers.values(), key=lambda r: r["seq"]), missing


# --- bounded reads ------------------------------------------------------------------------------


def _rows(queryset: Any, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows as dicts; the JSON columns read as text and parsed only where set (most rows have none)."""
    casts = {f"{name}_json": Cast(name, output_field=TextField()) for name in _JSON}
    query = queryset.annotate(**casts).values_list(*columns, *casts)
    # The ORM writes the SQL; the rows are fetched plainly, because its per-row machinery (converters,
    # iterables) costs more than SQLite's read of them: this is the part of a run that grows with the window.
    sql, params = query.query.sql_with_params()
    with connections[query.db].cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    names = (*columns, *_JSON)
    rows = [dict(zip(names, values, strict=True)) for values in fetched]
    for row in rows:
        for name in _JSON:
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return rows


def _light_rows(
    session: Session,
    *,
    model: str,
    budget: int,
    after_seq: int | None = None,
    before_seq: int | None = None,
    max_messages: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The session's messages newest first, without their text, a page at a time."""
    size = min(_PAGE_MAX, max(0, budget) // _TYPICAL + _PAGE_MIN)
    if max_messages:
        size = min(size, max_messages + _PAGE_MIN)
    read = tokens = 0
    while True:
        rows = Message.objects.filter(session_id=session.pk)
        if before_seq is not None:
            rows = rows.filter(seq__lt=before_seq)
        if after_seq is not None:
            rows = rows.filter(seq__gt=after_seq)
        page = _rows(rows.order_by("-seq")[:size], _LIGHT)
        uncounted = [r for r in page if r["token_count"] is None]
        if uncounted:
            _count(session, model, uncounted)
        yield from page
        if len(page) < size:
            return
        before_seq = page[-1]["seq"]
        read += len(page)
        tokens += sum(r["token_count"] for r in page)
        left = max(0, budget - tokens)
        size = min(_PAGE_MAX, int(left / max(FRAMING, tokens / read) * 1.25) + _PAGE_MIN)


def _count(session: Session, model: str, rows: list[dict[str, Any]]) -> None:
    """Fill in the token counts of rows stored without one (imported or bulk-created)."""
    texts = dict(
        Message.objects.filter(session_id=session.pk, seq__in=[r["seq"] for r in rows]).values_list("seq", "content")
    )
    for row in rows:
        row["token_count"] = message_tokens(model, {**row, "content": texts.get(row["seq"])})


def _full_rows(session: Session, seqs: list[int]) -> dict[int, dict[str, Any]]:
    rows = Message.objects.filter(session_id=session.pk, seq__gte=seqs[0], seq__lte=seqs[-1])
    wanted = set(seqs)
    return {r["seq"]: r for r in _rows(rows, _FULL) if r["seq"] in wanted}


def history_range(
    *, session: Session, model: str, after_seq: int | None, upto_seq: int, max_tokens: int, message_cap: int
) -> tuple[list[dict[str, Any]], bool]:
    """Messages in (after_seq, upto_seq], oldest first, at most ``max_tokens`` of the newest (a message
    counting at most ``message_cap``: longer ones are cut for the summary); and whether older ones were left out."""
    taken: list[dict[str, Any]] = []
    used = 0
    skipped = False
    for row in _light_rows(session, model=model, budget=max_tokens, after_seq=after_seq, before_seq=upto_seq + 1):
        cost = min(row["token_count"], message_cap)
        if used + cost > max_tokens and taken:
            skipped = True
            break
        used += cost
        taken.append(row)
    if not taken:
        return [], False
    taken.reverse()
    full = _full_rows(session, [r["seq"] for r in taken])
    return [{**full[r["seq"]], "token_count": r["token_count"]} for r in taken], skipped


# --- summaries ----------------------------------------------------------------------------------


def summary_model(version: Version) -> str:
    """The model that writes a version's summaries: its summary_model, CHATMODEL_SUMMARY_MODEL, or its own."""
    return version.summary_model or conf.SUMMARY_MODEL or version.model


def summary_chunk_budget(version: Version, model: str) -> int:
    """Tokens of transcript one summary call may take: the summary model's window less prompt, old summary, reply."""
    window = version.context_window if model == version.model and version.context_window else None
    window = window or _known_window(model) or conf.DEFAULT_CONTEXT_WINDOW
    fixed = text_tokens(model, conf.SUMMARY_PROMPT) + 2 * FRAMING + REPLY_PRIMING + 50
    return int(window) - 2 * conf.SUMMARY_MAX_TOKENS - fixed


def transcript_line(message: Mapping[str, Any], max_chars: int | None = None) -> str:
    """One message as a line of the transcript the summary model reads."""
    role = message["role"]
    text = message.get("content") or ""
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars] + " [...]"
    calls = message.get("tool_calls") or (
        [{"function": message["function_call"]}] if message.get("function_call") else []
    )
    if role == "assistant" and calls:
        called = "; ".join(f"{c['function'].get('name')}({c['function'].get('arguments', '')})" for c in calls)
        return f"assistant called {called}" + (f" and said: {text}" if text else "")
    if role in RESULT_ROLES:
        return f"result of {message.get('name') or 'the function'}: {text}"
    return f"{role}: {text}"


def summary_chunks(
    messages: Sequence[Mapping[str, Any]], chunk_tokens: int, max_chunks: int
) -> tuple[list[list[Mapping[str, Any]]], bool]:
    """Split messages (oldest first) into at most ``max_chunks`` runs of at most ``chunk_tokens`` tokens, one
    summary call each, oldest first; and whether older messages had to be left out. Packed from the newest."""
    chunks: list[list[Mapping[str, Any]]] = []
    chunk: list[Mapping[str, Any]] = []
    used = 0
    for message in reversed(messages):
        cost = min(int(message["token_count"]), chunk_tokens)  # a longer message is cut to one chunk
        if chunk and used + cost > chunk_tokens:
            chunks.append(chunk)
            if len(chunks) == max_chunks:
                return [list(reversed(c)) for c in reversed(chunks)], True
            chunk, used = [], 0
        chunk.append(message)
        used += cost
    if chunk:
        chunks.append(chunk)
    return [list(reversed(c)) for c in reversed(chunks)], False


def summary_input(previous: str, chunk: Sequence[Mapping[str, Any]], chunk_tokens: int) -> str:
    """The user message of a summary call: the summary so far and the messages to fold in."""
    lines: list[str] = []
    for message in chunk:
        limit = None
        text, tokens = message.get("content") or "", int(message["token_count"])
        if tokens > chunk_tokens and text:
            # A message bigger than a whole chunk (it is then alone in it) is cut to fit, by its own ratio.
            limit = max(1, len(text) * (chunk_tokens - FRAMING) // tokens)
        lines.append(transcript_line(message, max_chars=limit))
    transcript = "\n".join(lines)
    return f"Summary so far:\n{previous or '(none yet)'}\n\nNew messages:\n{transcript}\n\nWrite the updated summary."


def summary_clip(model: str, text: str) -> str:
    """The summary cut to CHATMODEL_SUMMARY_MAX_TOKENS (a model that ignores max_tokens cannot grow it)."""
    limit = conf.SUMMARY_MAX_TOKENS
    for _ in range(4):
        tokens = text_tokens(model, text)
        if tokens <= limit:
            return text
        text = text[: max(1, len(text) * limit // tokens - 8)]
    return text


def request_params(version: Version, params: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters sent to the model: the version's, overridden by the caller's allowed ones."""
    merged = {k: v for k, v in version.params.items() if k not in _APP_PARAMS}
    merged.update(params)
    return merged
