"""Items 2, 4, 5 and 6 on one live site and one worker, so they share its set-up (used by ``bench/run_all.py``).

    .venv/bin/python -m bench.live_items --db sqlite --items 2,6,4,5 --json-dir bench/out/json [--smoke]

Each item's result is written to ``<json-dir>/item-<n>-<db>.json``; an item that fails is written
with its error, and the others still run.
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

from bench import bench_concurrency, bench_rest, bench_startup, bench_streaming, common
from bench.common import ItemResult
from bench.site import live


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    # Item 4 leaves the worker holding what a thousand runs left behind, and item 5 starts workers of its own.
    parser.add_argument("--items", default="2,6,4,5", help="in this order")
    parser.add_argument("--json-dir", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    items = [i.strip() for i in args.items.split(",") if i.strip()]
    smoke = args.smoke
    levels = bench_concurrency.SMOKE_LEVELS if smoke else bench_concurrency.LEVELS
    common.raise_open_files(4 * max(levels) + 1024)
    with live(args.db) as site:
        # Items 2 and 6 share one worker; items 4 and 5 start their own.
        worker = site.start_worker() if set(items) & {"2", "6"} else None
        label = site.label
        runs = {
            "2": lambda: bench_streaming.measure(site, worker, reps=5 if smoke else 100, warmup=2 if smoke else 10),
            "4": lambda: bench_concurrency.measure(site, levels, timeout=30 if smoke else 300),
            "6": lambda: bench_rest.measure(
                site,
                worker,
                bench_rest.SMOKE_LEVELS if smoke else bench_rest.LEVELS,
                rounds=2 if smoke else 6,
                seconds=0.5 if smoke else 3.0,
            ),
            "5": lambda: bench_startup.measure(
                site, setup_reps=1 if smoke else 20, start_reps=1 if smoke else 3, late_after=None if smoke else 10.0
            ),
        }
        titles = {"2": "Streaming", "4": "Burst", "5": "Start-up", "6": "REST add_messages"}
        for item in items:
            started = time.perf_counter()
            print(f"\n=== item {item} on {label} ===", flush=True)
            try:
                result = runs[item]()
            except Exception:
                result = ItemResult(item, f"{titles[item]} ({label})", error=traceback.format_exc())
                print(result.error, flush=True)
            common.finish(result, started, args.json_dir / f"item-{item}-{args.db}.json")


if __name__ == "__main__":
    main()
