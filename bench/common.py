"""What every benchmark shares: the model profile, the fake model server, Django set-up, statistics, the table.

A benchmark compares the app's path with its floor (the same work done by hand: a bare LiteLLM call
to the same fake server, or over the websocket the hand-written consumer of ``bench/floor.py``), both
measured in the same run and interleaved A, B, A, B,
so drift and noise from other processes fall on both. Figures are medians and p95/p99 of repeated
measurements, and each comes with its ratio to the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"
SMOKE_RESULTS = OUT / "RESULTS-smoke.md"

# The fake model: a fixed reply of REPLY_WORDS words, streamed one word per chunk every token_delay seconds.
REPLY_WORDS = 30
REPLY = " ".join(f"word{i}" for i in range(REPLY_WORDS))
FAST_TOKEN_DELAY = 0.002  # items 1-3, 5: a fast model, so the app's own cost is visible against it
PACED_TOKEN_DELAY = 0.03  # item 4: about 33 tokens/s per stream, a hosted model's pace
FAKE_KEY = "sk-fake-bench-key-0123456789"
SYSTEM_PROMPT = "You are a helpful assistant."
TEXTS = (
    "Tell me about the weather in Oslo today, please.",
    "It is sunny with a light breeze and about 14 degrees.",
    "And what about tomorrow morning?",
    "Light rain until noon, then clearing.",
)
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"


# --- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Summary:
    """Median, p95 and p99 of one series (milliseconds unless said otherwise)."""

    n: int
    median: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(len(values), statistics.median(values), percentile(values, 0.95), percentile(values, 0.99))

    def text(self, unit: str = "ms", digits: int = 2) -> str:
        return f"{self.median:.{digits}f} / {self.p95:.{digits}f} / {self.p99:.{digits}f} {unit}"


def ratio(measured: float, floor: float) -> float:
    """measured / floor (nan when the floor is zero or missing)."""
    if not floor or floor != floor or measured != measured:
        return float("nan")
    return measured / floor


def interleave(a: Callable[[], float], b: Callable[[], float], reps: int, warmup: int) -> tuple[list, list]:
    """Call ``a`` and ``b`` alternately (A, B, A, B...) ``warmup`` times unrecorded, then ``reps`` times each."""
    xs, ys = [], []
    for i in range(warmup + reps):
        # Alternate which goes first, so neither always follows the other's side effects.
        first, second = (a, b) if i % 2 == 0 else (b, a)
        r1, r2 = first(), second()
        if i >= warmup:
            x, y = (r1, r2) if i % 2 == 0 else (r2, r1)
            xs.append(x)
            ys.append(y)
    return xs, ys


# --- the results table ------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table."""

    item: str
    figure: str
    measured: str
    floor: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def ratio_text(self) -> str:
        if self.ratio is None:
            return ""
        return "n/a" if self.ratio != self.ratio else f"{self.ratio:.2f}"

    def met_text(self) -> str:
        return {True: "yes", False: "**no**", None: ""}[self.met]


@dataclass
class ItemResult:
    """What one benchmark reports: its rows, notes for the reader, and how long it took."""

    item: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemResult:
        rows = [Row(**r) for r in data.pop("rows", [])]
        return cls(**data, rows=rows)


COLUMNS = ("item", "figure", "measured", "floor", "ratio", "target", "met?")


def _cells(row: Row) -> list[str]:
    return [row.item, row.figure, row.measured, row.floor, row.ratio_text(), row.target, row.met_text()]


def text_table(results: Sequence[ItemResult]) -> str:
    """The results as a plain-text table (for the terminal)."""
    rows = [_cells(r) for result in results for r in result.rows]
    widths = [max([len(c), *(len(row[i].replace("**", "")) for row in rows)]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.replace("**", "").ljust(w) for c, w in zip(row, widths, strict=True)))
    for result in results:
        if result.error:
            lines.append(f"item {result.item} failed: {result.error.strip().splitlines()[-1]}")
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(
    results: Sequence[ItemResult], machine: dict[str, str], command: str, seconds: float, docs: str = "../docs/bench.md"
) -> str:
    """The results as RESULTS.md: the machine, the command, one table, then each item's notes (``docs``: the link
    to docs/bench.md from where the file is written)."""
    out = [
        "# Benchmarks: the app's own cost against the floor",
        "",
        f"Generated by `{command}` on {machine.get('date', '?')} in {seconds:.0f} s. "
        f"How to run them and what each figure means: [docs/bench.md]({docs}).",
        "",
        "Figures are `median / p95 / p99` over repeated measurements unless they say `p50 / p99`; the floor is the "
        "same work without the app (a bare LiteLLM call to the same fake model server, the hand-written Channels "
        "consumer of bench/floor.py over the same websocket, or a plain DRF view), measured in the same run and "
        "interleaved with the app's path. The ratio is measured / floor (of medians unless the figure says "
        "otherwise).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {_md(k)} | {_md(v)} |" for k, v in machine.items()),
        "",
        "## Results",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for result in results:
        for row in result.rows:
            out.append("| " + " | ".join(_md(c) for c in _cells(row)) + " |")
        if result.error:
            out.append(f"| {result.item} | {_md(result.title)} | failed (see notes) | | | | **no** |")
    out += ["", "## Notes", ""]
    for result in results:
        out.append(f"### {result.item}. {result.title}")
        out.append("")
        if result.error:
            out.append("The benchmark failed:")
            out.append("")
            out.append("```")
            out.append(result.error.strip()[-3000:])
            out.append("```")
            out.append("")
        for note in result.notes:
            out.append(f"- {note}")
        notes_with_rows = [r for r in result.rows if r.note]
        for row in notes_with_rows:
            out.append(f"- {row.figure}: {row.note}")
        out.append(f"- Took {result.seconds:.0f} s.")
        out.append("")
    return "\n".join(out)


# --- the machine --------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else platform.machine()


def _memory() -> str:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return "?"
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.M)
    return f"{int(match.group(1)) / 1024 / 1024:.1f} GiB" if match else "?"


def postgres_version(url: str) -> str:
    """The PostgreSQL server's version, or why it is not reachable."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as connection:
            return str(connection.execute("SHOW server_version").fetchone()[0])
    except Exception as exc:
        return f"not reachable ({type(exc).__name__})"


def machine(postgres_url: str | None = None) -> dict[str, str]:
    """The machine and software the figures were measured on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores",
        "memory": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in load),
        "Python": platform.python_version(),
        "Django": _version("django"),
        "LiteLLM": _version("litellm"),
        "DRF / Channels / daphne / websockets": " / ".join(
            _version(p) for p in ("djangorestframework", "channels", "daphne", "websockets")
        ),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres_version(postgres_url or postgres_server_url()),
    }


# --- processes and resources ------------------------------------------------------------------


def raise_open_files(wanted: int = 16384) -> int:
    """Raise this process's open-files limit towards ``wanted`` (children inherit it); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS), KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s*(\d+) kB", text, re.M).group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, timeout: float = 60.0, quiet: float = 0.05, interval: float = 0.5) -> float:
    """Wait until a process uses less than ``quiet`` CPU seconds per ``interval`` (a worker's LiteLLM preload is
    done); return the seconds waited."""
    started = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - started < timeout:
        time.sleep(interval)
        now = cpu_seconds(pid)
        if now - before < quiet:
            break
        before = now
    return time.monotonic() - started


def litellm():
    """LiteLLM, imported and configured the way the app configures it (offline cost map, quiet)."""
    from chatmodel_app.llm._litellm import get_litellm

    return get_litellm()


@dataclass
class Fake:
    """A running fake model server: its base URL (litellm's ``api_base``) and process id."""

    url: str
    pid: int


@contextlib.contextmanager
def fake_server(token_delay: float, words: int = REPLY_WORDS, first_token_delay: float = 0.0) -> Iterator[Fake]:
    """A FakeLLMServer in a process of its own (so it never competes for this process's GIL)."""
    command = [
        sys.executable,
        "-m",
        "bench.fake_server",
        *("--token-delay", str(token_delay), "--words", str(words), "--first-token-delay", str(first_token_delay)),
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_child_env()
    )
    try:
        line = process.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(f"the fake model server did not start: {line!r}")
        yield Fake(line, process.pid)
    finally:
        process.stdin.close()  # it exits when its stdin closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# --- Django in this process (items 1 and 3) ---------------------------------------------------


def postgres_server_url() -> str:
    """The PostgreSQL server to create the bench database on: BENCH_POSTGRES_URL, else DATABASE_URL, else local."""
    return os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("DATABASE_URL") or DEFAULT_POSTGRES_URL


def postgres_reachable(url: str | None = None) -> bool:
    """Whether the PostgreSQL server answers."""
    return not postgres_version(url or postgres_server_url()).startswith("not reachable")


@contextlib.contextmanager
def django_in_process(db: str, tmp: Path) -> Iterator[None]:
    """Set Django up here with the example project's settings, on a temp SQLite file or a new PostgreSQL database.

    The PostgreSQL database (``chatmodel_bench_<pid>``) is created on ``postgres_server_url()`` and dropped at
    the end. Migrates, and sets the fake provider key.
    """
    from tests.live import _postgres_database

    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    os.environ["DJANGO_DEBUG"] = "0"  # DEBUG keeps every query in memory
    os.environ["OPENAI_API_KEY"] = FAKE_KEY
    os.environ.pop("REDIS_URL", None)  # the in-memory channel layer: one process
    with contextlib.ExitStack() as stack:
        if db == "postgres":
            url = stack.enter_context(_postgres_database(postgres_server_url(), f"chatmodel_bench_{os.getpid()}"))
            os.environ["DATABASE_URL"] = url
        elif db == "sqlite":
            os.environ.pop("DATABASE_URL", None)
            os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
        else:
            raise ValueError(f"unknown database {db!r}")
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        # Connections must be closed before the PostgreSQL database is dropped.
        stack.callback(connections.close_all)
        yield


def chat_model_create(name: str, api_base: str, *, window: int | None = None):
    """A chat model with one published version on the fake server (``openai/fake-model`` at ``api_base``)."""
    from chatmodel_app.models import ChatModel, Version
    from chatmodel_app.services import version_create

    chat_model = ChatModel.objects.create(name=name)
    version = version_create(
        chat_model=chat_model, system_prompt=SYSTEM_PROMPT, model="openai/fake-model", params={"api_base": api_base}
    )
    fields: dict[str, Any] = {"is_published": True}
    if window:
        fields["context_window"] = window
    Version.objects.filter(pk=version.pk).update(**fields)
    return chat_model


# --- command line -------------------------------------------------------------------------------


def arguments(description: str, *extra: Callable[[argparse.ArgumentParser], None]) -> argparse.Namespace:
    """The options every benchmark takes: --smoke, --json (write the ItemResult there), --profile."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="a few iterations: seconds, to check the script works")
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this file (used by bench/run_all)")
    parser.add_argument("--profile", action="store_true", help="profile the app's path with cProfile and print it")
    for add in extra:
        add(parser)
    return parser.parse_args()


def finish(result: ItemResult, started: float, json_path: Path | None) -> ItemResult:
    """Print the item's table and notes; write its JSON when asked."""
    result.seconds = time.perf_counter() - started
    print(text_table([result]))
    for note in result.notes:
        print(f"- {note}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.to_json(), indent=1))
    return result


@contextlib.contextmanager
def profiled(enabled: bool, label: str, top: int = 25) -> Iterator[None]:
    """cProfile the block when ``enabled`` and print the functions with the most cumulative time."""
    if not enabled:
        yield
        return
    import cProfile
    import io
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        stream = io.StringIO()
        stats = pstats.Stats(profile, stream=stream)
        # The app's own functions by cumulative time, then every function by its own time.
        stats.sort_stats("cumulative").print_stats(r"chatmodel_app", top)
        stats.sort_stats("tottime").print_stats(top)
        print(f"\n--- profile: {label} ---\n{stream.getvalue()}")
