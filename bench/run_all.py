"""Run every benchmark, print one table and write it to ``bench/RESULTS.md``.

    .venv/bin/python -m bench              # make bench: the full run (half an hour or more), writes bench/RESULTS.md
    .venv/bin/python -m bench --smoke      # make bench-smoke: tiny, writes bench/out/RESULTS-smoke.md
    .venv/bin/python -m bench --items 1,3  # some items only (the file then holds only those)

Each benchmark runs in a process of its own (Django can be set up once per process): items 1 and 3
set Django up in-process (item 1 once on SQLite and once on a new PostgreSQL database); items 2, 6
and 4 run in one process that drives a live site's daphne worker, and item 5 in another that starts
workers of its own (on SQLite; in the full run items 6 and 4 again on PostgreSQL). The full run
runs them one after another; the smoke run runs them all at once (its figures are not the point).
PostgreSQL comes from BENCH_POSTGRES_URL, else DATABASE_URL, else
postgres://postgres@127.0.0.1:5432/postgres; when it is not reachable those rows say so. Exits
non-zero when a benchmark failed (not when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench import common
from bench.common import ItemResult

ORDER = {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5}


Job = tuple[list[str], list[tuple[str, str, Path]]]


def _collect(job: Job, returncode: int, seconds: float) -> list[ItemResult]:
    """The results a benchmark process wrote; an error result for each it did not."""
    command, json_paths = job
    results = []
    for item, title, path in json_paths:
        if path.exists():
            results.append(ItemResult.from_json(json.loads(path.read_text())))
        else:
            failure = f"`{shlex.join(command)}` exited with {returncode} without a result; see its output."
            results.append(ItemResult(item, title, error=failure, seconds=seconds))
    return results


def run_jobs(jobs: list[Job], parallel: bool, logs: Path) -> list[ItemResult]:
    """Run the benchmark processes one after another (their output goes to this terminal), or all at once.

    At once is for the smoke run only, whose figures nobody reads: it checks that the scripts work,
    in the time of the longest rather than the sum. Their output is then printed when all are done.
    """
    results: list[ItemResult] = []
    if not parallel:
        for job in jobs:
            print(f"\n$ {shlex.join(job[0])}", flush=True)
            started = time.perf_counter()
            done = subprocess.run(job[0], cwd=common.ROOT, check=False)
            results += _collect(job, done.returncode, time.perf_counter() - started)
        return results
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    running = []
    for n, job in enumerate(jobs):
        log = logs / f"job-{n}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(job[0], cwd=common.ROOT, stdout=out, stderr=subprocess.STDOUT)
        running.append((job, process, log))
    for job, process, log in running:
        returncode = process.wait()
        print(f"\n$ {shlex.join(job[0])}\n{log.read_text(errors='replace')}", flush=True)
        results += _collect(job, returncode, time.perf_counter() - started)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every item tiny; writes bench/out/RESULTS-smoke.md")
    parser.add_argument("--items", default="1,2,3,4,5,6", help="comma-separated items (default: all)")
    parser.add_argument("--out", type=Path, help="where to write the Markdown table")
    args = parser.parse_args(argv)
    items = {i.strip() for i in args.items.split(",") if i.strip()}
    smoke = ["--smoke"] if args.smoke else []
    out = args.out or (common.SMOKE_RESULTS if args.smoke else common.RESULTS)
    json_dir = common.OUT / ("json-smoke" if args.smoke else "json")
    json_dir.mkdir(parents=True, exist_ok=True)
    for old in json_dir.glob("*.json"):
        old.unlink()
    given = tuple(argv if argv is not None else sys.argv[1:])
    command = {(): "make bench", ("--smoke",): "make bench-smoke"}.get(
        given, shlex.join([".venv/bin/python", "-m", "bench", *given])
    )

    started = time.perf_counter()
    info = common.machine()
    postgres = common.postgres_reachable()
    python = sys.executable

    jobs: list[Job] = []
    if "1" in items:
        for db in ("sqlite", "postgres"):
            path = json_dir / f"item-1-{db}.json"
            cmd = [python, "-m", "bench.bench_overhead", "--db", db, "--json", str(path), *smoke]
            jobs.append((cmd, [("1", f"Run overhead ({db})", path)]))
    if "3" in items:
        path = json_dir / "item-3-sqlite.json"
        jobs.append(([python, "-m", "bench.bench_history", "--json", str(path), *smoke], [("3", "History", path)]))
    titles = {"2": "Streaming", "4": "Burst", "5": "Start-up", "6": "REST add_messages"}
    # Item 5 starts cold workers of its own: a process (and site) of its own, so the smoke run overlaps it.
    for group in ([i for i in ("2", "6", "4") if i in items], [i for i in ("5",) if i in items]):
        if group:
            cmd = [python, "-m", "bench.live_items", "--db", "sqlite", "--items", ",".join(group), "--json-dir"]
            paths = [(i, f"{titles[i]} (SQLite)", json_dir / f"item-{i}-sqlite.json") for i in group]
            jobs.append(([*cmd, str(json_dir), *smoke], paths))
    # PostgreSQL for the items where the database carries the load; the smoke run checks item 1's path only.
    live_pg = [i for i in ("6", "4") if i in items]
    skipped: list[ItemResult] = []
    if live_pg and not args.smoke:
        if postgres:
            cmd = [python, "-m", "bench.live_items", "--db", "postgres", "--items", ",".join(live_pg), "--json-dir"]
            paths = [(i, f"{titles[i]} (PostgreSQL)", json_dir / f"item-{i}-postgres.json") for i in live_pg]
            jobs.append(([*cmd, str(json_dir)], paths))
        else:
            for i in live_pg:
                result = ItemResult(i, f"{titles[i]} (PostgreSQL)")
                result.notes = [f"Not measured: PostgreSQL is not reachable at {common.postgres_server_url()}."]
                skipped.append(result)
    results = run_jobs(jobs, parallel=args.smoke, logs=json_dir / "logs") + skipped

    results.sort(key=lambda r: ORDER.get(r.item, 99))
    seconds = time.perf_counter() - started
    print("\n" + common.text_table(results))
    out.parent.mkdir(parents=True, exist_ok=True)
    docs = os.path.relpath(common.ROOT / "docs" / "bench.md", out.parent.resolve())
    out.write_text(common.markdown(results, info, command, seconds, docs) + "\n")
    print(f"\nWrote {out.relative_to(common.ROOT) if out.is_relative_to(common.ROOT) else out} in {seconds:.0f} s.")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
