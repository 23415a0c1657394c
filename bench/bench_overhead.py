"""Item 1, run overhead: ``ChatModel.run()`` on a 20-message session vs ``litellm.completion()`` with the same messages.

    .venv/bin/python -m bench.bench_overhead --db sqlite      # or --db postgres
    .venv/bin/python -m bench.bench_overhead --smoke

Django runs in this process with the example project's settings, on a temporary SQLite file or a
new PostgreSQL database (created on BENCH_POSTGRES_URL / DATABASE_URL / the local server, dropped
at the end). The model is the fake server in its own process: 30 words at 2 ms per word, so a
reply takes about 60 ms. Measured (A): ``ChatModel(name, session_uuid=...).run()``, as a view
would call it, non-streaming; the reply it stores is deleted afterwards (untimed) so every run
sees the same 20 messages. Floor (B): ``litellm.completion(model="openai/fake-model", api_base=...,
api_key=..., messages=<the system prompt and the same 20 messages>)``. A and B alternate.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench import common
from bench.common import ItemResult, Row, Summary

TARGET = 1.10
SESSION_MESSAGES = 20


def measure(db: str, reps: int, warmup: int, profile: bool = False) -> ItemResult:
    """Run the comparison on ``db`` ("sqlite" or "postgres")."""
    label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[db]
    result = ItemResult("1", f"Run overhead ({label})")
    with (
        tempfile.TemporaryDirectory(prefix="chatmodel-bench-") as tmp,
        common.fake_server(common.FAST_TOKEN_DELAY) as fake,
        common.django_in_process(db, Path(tmp)),
    ):
        from chatmodel_app import ChatModel, llm
        from chatmodel_app.models import Message, Run, Session

        common.chat_model_create("bench", fake.url)
        first = ChatModel("bench")
        texts = common.TEXTS
        first.add_messages(
            [
                {"role": "assistant" if i % 2 == 0 else "user", "content": texts[i % len(texts)]}
                for i in range(SESSION_MESSAGES)
            ]
        )
        session_uuid = first.session_uuid
        session = Session.objects.get(uuid=session_uuid)
        config = first.get_config()
        messages = [{"role": "system", "content": config.system_prompt}] + [
            {"role": m["role"], "content": m["content"]} for m in config.message_logs
        ]
        litellm = common.litellm()

        inside: list[float] = []
        real_complete = llm.complete

        def timed_complete(request):
            started = time.perf_counter()
            try:
                return real_complete(request)
            finally:
                inside.append(time.perf_counter() - started)

        llm.complete = timed_complete
        own_ms: list[float] = []

        def app() -> float:
            inside.clear()
            started = time.perf_counter()
            response = ChatModel("bench", session_uuid=session_uuid).run()
            elapsed = time.perf_counter() - started
            if response.error:
                raise SystemExit(f"run() failed: {response.error_code}: {response.error_log}")
            Message.objects.filter(session=session, seq__gt=SESSION_MESSAGES).delete()
            Session.objects.filter(pk=session.pk).update(next_seq=SESSION_MESSAGES + 1)
            own_ms.append((elapsed - sum(inside)) * 1000)
            return elapsed * 1000

        def floor() -> float:
            started = time.perf_counter()
            response = litellm.completion(
                model="openai/fake-model", api_base=fake.url, api_key=common.FAKE_KEY, messages=messages
            )
            elapsed = time.perf_counter() - started
            assert response.choices[0].message.content == common.REPLY
            return elapsed * 1000

        try:
            a, b = common.interleave(app, floor, reps, warmup)
            with common.profiled(profile, f"ChatModel.run() on {label}"):
                for _ in range(20 if profile else 0):
                    app()
        finally:
            llm.complete = real_complete
        sent = Run.objects.filter(session=session).order_by("-created_at").values_list("message_count", flat=True)[0]
        own = Summary.of(own_ms[warmup : warmup + reps])

    run, base = Summary.of(a), Summary.of(b)
    median_ratio, p95_ratio = common.ratio(run.median, base.median), common.ratio(run.p95, base.p95)
    result.rows = [
        Row(
            "1",
            f"run() vs litellm.completion, {label}, ratio of medians",
            run.text(),
            base.text(),
            median_ratio,
            f"<= {TARGET:.2f}",
            median_ratio <= TARGET,
        ),
        Row("1", f"same, {label}, ratio of p95", f"{run.p95:.2f} ms", f"{base.p95:.2f} ms", p95_ratio, "", None),
        Row("1", f"app's own time in run() (outside llm.complete), {label}", own.text(), ""),
    ]
    result.notes = [
        f"{reps} runs each after {warmup} unrecorded warm-up runs; a 20-message session ({sent} messages sent, plus "
        f"the system prompt); the fake model replies {common.REPLY_WORDS} words after "
        f"{common.FAST_TOKEN_DELAY * 1000 * (common.REPLY_WORDS - 1):.0f} ms.",
        f"Added time: {run.median - base.median:.1f} ms at the median. A ratio of {TARGET:.2f} holds for models that "
        f"take at least {(run.median - base.median) / (TARGET - 1):.0f} ms to answer.",
    ]
    return result


def main() -> None:
    started = time.perf_counter()
    args = common.arguments(
        __doc__.split("\n\n")[0],
        lambda p: p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite"),
        lambda p: p.add_argument("--reps", type=int, help="measured runs of each (default 200, smoke 5)"),
    )
    reps = args.reps or (5 if args.smoke else 200)
    warmup = 2 if args.smoke else 10
    if args.db == "postgres" and not common.postgres_reachable():
        result = ItemResult("1", "Run overhead (PostgreSQL)")
        result.rows = [Row("1", "run() vs litellm.completion, PostgreSQL", "not measured", target=f"<= {TARGET:.2f}")]
        result.notes = [f"PostgreSQL is not reachable at {common.postgres_server_url()}: set BENCH_POSTGRES_URL."]
    else:
        result = measure(args.db, reps, warmup, profile=args.profile)
    common.finish(result, started, args.json)


if __name__ == "__main__":
    main()
