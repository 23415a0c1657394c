"""The diff engine on its own: plain strings and dicts in, the rows and sections "Compare versions" renders out."""

from __future__ import annotations

import json

from chatmodel_app.admin.diff import CONTEXT, FIELDS, diff_sections, intraline, pretty, shown, side_by_side

RULES = [f"Rule {i}." for i in range(1, 21)]


def version(**fields) -> dict:
    values = dict.fromkeys(FIELDS)
    values.update(system_prompt="Be polite.", params={}, tools=[], model="offline/demo", is_published=False)
    values.update(fields)
    return values


def kinds(rows: list[dict]) -> list[str]:
    return [row["kind"] for row in rows]


# --- intraline marks ---------------------------------------------------------------------------------


def test_intraline_marks_only_the_words_that_changed():
    assert intraline("Be polite.", "Be very polite.") == ("Be polite.", "Be<ins> very</ins> polite.")
    assert intraline("Answer in English.", "Answer in French.") == (
        "Answer in <del>English</del>.",
        "Answer in <ins>French</ins>.",
    )


def test_intraline_escapes_the_text_it_marks_and_the_text_around_it():
    left, right = intraline("if a < b & c", "if a > b & c")
    assert left == "if a <del>&lt;</del> b &amp; c"
    assert right == "if a <ins>&gt;</ins> b &amp; c"


def test_a_changed_line_is_a_replace_row_with_both_line_numbers():
    assert side_by_side("one\ntwo", "one\n2") == [
        {"kind": "equal", "ln": 1, "left": "one", "rn": 1, "right": "one"},
        {"kind": "replace", "ln": 2, "rn": 2, "left": "<del>two</del>", "right": "<ins>2</ins>"},
    ]


def test_added_and_removed_lines_have_a_number_on_one_side_only():
    assert side_by_side("a\nb", "a") == [
        {"kind": "equal", "ln": 1, "left": "a", "rn": 1, "right": "a"},
        {"kind": "delete", "ln": 2, "rn": None, "left": "b", "right": None},
    ]
    assert side_by_side("a", "a\nb")[-1] == {"kind": "insert", "ln": None, "rn": 2, "left": None, "right": "b"}


# --- folding -------------------------------------------------------------------------------------------


def test_a_long_unchanged_run_before_a_change_folds_keeping_context():
    rows = side_by_side("\n".join([*RULES, "End."]), "\n".join([*RULES, "Fin."]))
    assert kinds(rows) == ["fold", *["equal"] * CONTEXT, "replace"]
    assert rows[0]["count"] == 20 - CONTEXT
    assert [row["left"] for row in rows[1:-1]] == RULES[-CONTEXT:]


def test_a_long_unchanged_run_after_a_change_folds_at_its_end():
    rows = side_by_side("\n".join(["x", *RULES]), "\n".join(["y", *RULES]))
    assert kinds(rows) == ["replace", *["equal"] * CONTEXT, "fold"]
    assert rows[-1]["count"] == 20 - CONTEXT


def test_an_unchanged_run_between_changes_keeps_context_on_both_sides():
    rows = side_by_side("\n".join(["x", *RULES, "x"]), "\n".join(["y", *RULES, "y"]))
    assert kinds(rows) == ["replace", *["equal"] * CONTEXT, "fold", *["equal"] * CONTEXT, "replace"]
    assert rows[1 + CONTEXT]["count"] == 20 - 2 * CONTEXT
    # A run that the fold would save only one line of is shown whole.
    short = RULES[: 2 * CONTEXT + 1]
    assert "fold" not in kinds(side_by_side("\n".join(["x", *short, "x"]), "\n".join(["y", *short, "y"])))


def test_fold_false_shows_every_line():
    rows = side_by_side("\n".join([*RULES, "End."]), "\n".join([*RULES, "Fin."]), fold=False)
    assert kinds(rows) == ["equal"] * 20 + ["replace"]
    assert [row["ln"] for row in rows] == list(range(1, 22))


# --- identical inputs -----------------------------------------------------------------------------------


def test_identical_texts_have_no_changed_rows():
    text = "\n".join(RULES)
    assert side_by_side(text, text) == [{"kind": "fold", "count": 20}]
    assert kinds(side_by_side(text, text, fold=False)) == ["equal"] * 20
    assert side_by_side("", "") == []


def test_identical_versions_give_sections_without_differences():
    a = version(params={"temperature": 0.5, "top_p": 1}, tools=[{"name": "f"}], tags=["x"])
    b = version(params={"top_p": 1, "temperature": 0.5}, tools=[{"name": "f"}], tags=["x"])
    sections = diff_sections(a, b)
    assert [s["id"] for s in sections] == ["system_prompt", "settings", "params", "tools"]
    assert all(s["same"] for s in sections if "same" in s)  # key order does not make a difference
    assert not any(row["changed"] for row in sections[1]["table"])


# --- JSON fields and settings ---------------------------------------------------------------------------


def test_json_fields_are_compared_pretty_printed_with_sorted_keys():
    a = version(params={"temperature": 0.5, "max_tokens": 100})
    b = version(params={"max_tokens": 100, "temperature": 0.9})
    params = next(s for s in diff_sections(a, b, fold=False) if s["id"] == "params")
    assert not params["same"]
    assert [(row["kind"], row["left"], row["right"]) for row in params["rows"]] == [
        ("equal", "{", "{"),
        ("equal", '  "max_tokens": 100,', '  "max_tokens": 100,'),
        # A replaced line is HTML: its quotes are escaped, the changed digits marked.
        ("replace", "  &quot;temperature&quot;: 0.<del>5</del>", "  &quot;temperature&quot;: 0.<ins>9</ins>"),
        ("equal", "}", "}"),
    ]
    assert pretty({"b": [1], "a": "é"}) == json.dumps({"a": "é", "b": [1]}, indent=2, ensure_ascii=False)


def test_settings_are_a_table_marking_what_changed():
    a = version(model="offline/demo", fallbacks=[], is_published=True, ratio=1.0)
    b = version(model="gpt-4o-mini", fallbacks=["offline/demo", "gpt-4o"], is_published=True, ratio=1.0)
    table = {row["label"]: row for row in diff_sections(a, b)[1]["table"]}
    assert (table["Model"]["left"], table["Model"]["right"], table["Model"]["changed"]) == (
        "offline/demo",
        "gpt-4o-mini",
        True,
    )
    assert (table["Fallbacks"]["left"], table["Fallbacks"]["right"]) == ("-", "offline/demo, gpt-4o")
    assert (table["Published"]["right"], table["Published"]["changed"]) == ("yes", False)
    assert (shown(None), shown(""), shown(False), shown(0.5)) == ("-", "-", "no", "0.5")
