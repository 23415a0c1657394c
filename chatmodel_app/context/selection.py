"""The selection: the newest messages that fit, in units (a call goes with all its results), by strategy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..conf import conf
from ..exceptions import ContextTooLong, InvalidMessages
from ..llm.messages import RESULT_ROLES
from ..models import Session, Version
from .budget import FRAMING, REPLY_PRIMING, context_window, input_budget, reply_reserve, text_tokens, tools_tokens
from .prompt import system_prompt_for
from .reads import full_rows, light_rows
from .summaries import SUMMARY_HEADER, summary_tokens


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


def context_select(
    *, session: Session, version: Version, tools: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> Selection:
    """The history a run sends, by the version's strategy; raises ContextTooLong or InvalidMessages.

    With strategy ``summary`` the result may ask for a summary (``summarise_upto``): the caller
    (``services.summary_refresh``) writes it, then calls ``set_summary`` and ``drop_oldest``.
    """
    model = version.model
    prompt = system_prompt_for(version, session)  # with the session's variable values, as it is sent
    system = text_tokens(model, prompt) + FRAMING if prompt else 0
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
    rows = light_rows(session, model=version.model, budget=budget, after_seq=after_seq, max_messages=max_messages)
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
    full = full_rows(session, seqs)
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
