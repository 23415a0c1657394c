"""Item 3, history: does a run cost more as the session grows? run() overhead at 10, 1,000 and 10,000 stored messages.

    .venv/bin/python -m bench.bench_history            # about a minute
    .venv/bin/python -m bench.bench_history --smoke    # a few seconds (sessions of 10, 100 and 1,000)

Django is set up on a temporary SQLite database (the example project's settings: WAL, immediate
transactions) and the model is the fake OpenAI-compatible server from ``chatmodel_app.testing``,
in its own process, answering at once. "Overhead" is the wall time of ``services.run()`` less the
time spent inside ``llm.complete`` (LiteLLM, HTTP and the fake server), measured on every run; so it
is the app's own work: claim the session, choose the history, store the reply and the Run. After
each run its reply is deleted, so every repetition sees the same history.

Two windows are measured. "small window": the version's context_window holds fewer than ten messages,
so every session sends the same number and the table isolates the session's length. "8k window":
CHATMODEL_DEFAULT_CONTEXT_WINDOW (8,192 tokens), where a 10-message session sends 10 messages and the
longer ones send a full window (~500): there the 10,000/1,000 ratio isolates the session's length, and
the 10,000/10 ratio also includes the bigger window. Not a timed test: nothing here fails.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench import common
from bench.common import ItemResult, Row, Summary

SIZES = (10, 1_000, 10_000)
SMOKE_SIZES = (10, 100, 1_000)
TEXTS = common.TEXTS
TARGET = 1.2


def build_session(chat_model, n: int):
    """A session of ``n`` stored messages (bulk-created, counted as add_messages counts them)."""
    from chatmodel_app import context, services
    from chatmodel_app.models import Message, Session

    session = services.session_create(chat_model=chat_model, version="latest")
    model = session.version.model
    costs = {text: context.message_tokens(model, {"content": text}) for text in TEXTS}
    rows = [
        Message(
            session=session,
            seq=i + 1,
            role="user" if i % 2 == 0 or i == n - 1 else "assistant",
            content=TEXTS[i % len(TEXTS)],
            token_count=costs[TEXTS[i % len(TEXTS)]],
        )
        for i in range(n)
    ]
    Message.objects.bulk_create(rows, batch_size=2000)
    Session.objects.filter(pk=session.pk).update(next_seq=n + 1)
    session.refresh_from_db()
    return session


def measure(session, n: int, reps: int, warmup: int) -> dict[str, float]:
    """run() wall time and overhead (ms), messages sent, queries per run, add_messages time (ms)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chatmodel_app import llm, services
    from chatmodel_app.models import Message, Run, Session

    inside: list[float] = []
    real_complete = llm.complete

    def timed_complete(request):
        started = time.perf_counter()
        try:
            return real_complete(request)
        finally:
            inside.append(time.perf_counter() - started)

    def reset() -> None:
        Message.objects.filter(session=session, seq__gt=n).delete()
        Session.objects.filter(pk=session.pk).update(next_seq=n + 1)

    llm.complete = timed_complete
    totals, overheads, adds = [], [], []
    try:
        for rep in range(warmup + reps):
            inside.clear()
            started = time.perf_counter()
            response = services.run(session=session)
            elapsed = time.perf_counter() - started
            if response.error:
                raise SystemExit(f"run failed: {response.error_code}: {response.error_log}")
            reset()
            started = time.perf_counter()
            services.messages_add(session=session, messages=[{"role": "user", "content": TEXTS[0]}])
            added = time.perf_counter() - started
            reset()
            if rep >= warmup:
                totals.append(elapsed * 1000)
                overheads.append((elapsed - sum(inside)) * 1000)
                adds.append(added * 1000)
        with CaptureQueriesContext(connection) as queries:
            services.run(session=session)
        reset()
    finally:
        llm.complete = real_complete
    run = Run.objects.filter(session=session).order_by("-created_at").first()
    summary = Summary.of(overheads)
    return {
        "total_median": statistics.median(totals),
        "median": summary.median,
        "p95": summary.p95,
        "p99": summary.p99,
        "sent": run.message_count,
        "queries": len(queries),
        "add_median": statistics.median(adds),
    }


def run_windows(sizes: tuple[int, ...], reps: int, warmup: int, profile: bool = False) -> ItemResult:
    """Measure both windows at every size; print the detailed table; return the summary rows."""
    result = ItemResult("3", "History")
    with (
        tempfile.TemporaryDirectory(prefix="chatmodel-bench-") as tmp,
        common.fake_server(0.0) as fake,
        common.django_in_process("sqlite", Path(tmp)),
    ):
        from chatmodel_app.models import ChatModel
        from chatmodel_app.services import version_create

        windows = (("small window", 1150), ("8k window", None))
        print(f"run() overhead = wall time - time inside llm.complete; {reps} runs per size, ms\n")
        header = (
            f"{'window':<13} {'messages':>9} {'sent':>5} {'queries':>7} {'median':>8} {'p95':>8} "
            f"{'run() total':>11} {'add_messages':>12}"
        )
        print(header)
        print("-" * len(header))
        measured = []
        for label, window in windows:
            chat_model = ChatModel.objects.create(name=f"bench-{window or 'default'}")
            version = version_create(
                chat_model=chat_model,
                system_prompt=common.SYSTEM_PROMPT,
                model="openai/fake-model",
                params={"api_base": fake.url},
            )
            if window:
                type(version).objects.filter(pk=version.pk).update(context_window=window)
            results = {}
            for n in sizes:
                session = build_session(chat_model, n)
                with common.profiled(profile and n == sizes[-1], f"{label}, {n:,} messages"):
                    results[n] = r = measure(session, n, reps, warmup)
                print(
                    f"{label:<13} {n:>9,} {r['sent']:>5} {r['queries']:>7} {r['median']:>8.2f} {r['p95']:>8.2f} "
                    f"{r['total_median']:>11.2f} {r['add_median']:>12.2f}"
                )
            measured.append((label, results))
        print()

    small, mid, big = sizes
    for label, results in measured:
        sent = {n: results[n]["sent"] for n in sizes}
        for n in sizes:
            r = results[n]
            result.rows.append(
                Row(
                    "3",
                    f"run() overhead, {label}, {n:,} messages ({sent[n]} sent, {r['queries']} queries)",
                    f"{r['median']:.2f} / {r['p95']:.2f} / {r['p99']:.2f} ms",
                )
            )
        overhead = {n: results[n]["median"] for n in sizes}
        pairs = [(big, small)] if sent[small] == sent[big] else [(big, small), (big, mid)]
        for top, bottom in pairs:
            value = common.ratio(overhead[top], overhead[bottom])
            what = "same messages sent" if sent[top] == sent[bottom] else f"{sent[bottom]} vs {sent[top]} sent"
            result.rows.append(
                Row(
                    "3",
                    f"history ratio {top:,} vs {bottom:,}, {label} ({what})",
                    f"{overhead[top]:.2f} ms",
                    f"{overhead[bottom]:.2f} ms",
                    value,
                    f"<= {TARGET}",
                    value <= TARGET,
                )
            )
        adds = common.ratio(results[big]["add_median"], results[small]["add_median"])
        result.notes.append(
            f"{label}: add_messages (one message) takes {results[small]['add_median']:.2f} ms at {small:,} stored "
            f"messages and {results[big]['add_median']:.2f} ms at {big:,} (x{adds:.2f})."
        )
    sent_small = measured[0][1][big]["sent"]
    sent_window = measured[1][1][big]["sent"]
    result.notes.insert(
        0,
        f"Overhead = run() wall time less the time inside llm.complete; {reps} runs per size after {warmup} warm-up "
        'runs. The floor of a history ratio is the same figure on a shorter session. "small window": a '
        f"context_window of 1,150 tokens, so every session sends the same {sent_small} messages and only the stored "
        'history grows. "8k window": the default 8,192-token window, where a short session sends all its messages '
        f"and the longer ones send a full window ({sent_window} messages).",
    )
    return result


def main() -> None:
    started = time.perf_counter()
    args = common.arguments(
        __doc__.split("\n\n")[0],
        lambda p: p.add_argument("--reps", type=int, default=None, help="measured runs per size (default 40, smoke 3)"),
    )
    reps = args.reps or (3 if args.smoke else 40)
    warmup = 1 if args.smoke else 5
    result = run_windows(SMOKE_SIZES if args.smoke else SIZES, reps, warmup, profile=args.profile)
    common.finish(result, started, args.json)


if __name__ == "__main__":
    main()
