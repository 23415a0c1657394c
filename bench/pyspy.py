"""A py-spy profile of a worker during a burst, broken down per run and per token.

    .venv/bin/python -m bench.pyspy bench/out/profile-sqlite-100.txt --cpu 6.2 --runs 100 --tokens 3000

``record()`` runs ``py-spy record --format raw`` on a running process (py-spy must be installed:
``.venv/bin/pip install py-spy``) and stops it when the block ends. ``breakdown()`` reads the
collapsed stacks it wrote and shares the worker's measured CPU seconds out by sample counts: by the
package whose code was on top of the stack (self time), and by the app's own functions with
everything they call (inclusive time), each as milliseconds per run and microseconds per token.
py-spy counts only samples of threads that were running, so the shares are shares of CPU time.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Samples per second: enough for a burst of seconds; at 100, py-spy itself fell seconds behind on 2 busy cores.
RATE = 50

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def available() -> str | None:
    """The py-spy executable next to this interpreter or on PATH, if any."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def record(pid: int, out: Path, rate: int = RATE) -> Iterator[None]:
    """py-spy samples process ``pid`` (without pausing it) while the block runs; collapsed stacks go to ``out``."""
    executable = available()
    if executable is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [executable, "record", "-p", str(pid), "-r", str(rate), "--format", "raw", "-o", str(out)]
    process = subprocess.Popen(
        [*command, "--full-filenames", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(1.0)  # attached before the burst starts
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {stderr.decode(errors='replace')[-2000:]}")


def _own(file: str) -> bool:
    """Whether a frame is the measured code's own: the app's, or the floor consumer's."""
    return "chatmodel_app/" in file or file.endswith("bench/floor.py")


def _package(file: str) -> str:
    """What a frame's file belongs to: the app's module, a site-packages package, or the stdlib module."""
    path = file.replace("\\", "/")
    if path.endswith("bench/floor.py"):
        return "bench.floor"
    if "chatmodel_app/" in path:
        module = path.split("chatmodel_app/", 1)[1].removesuffix(".py").replace("/", ".")
        return f"chatmodel_app.{module.removesuffix('.__init__')}"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    match = re.search(r"/python3\.\d+/(.+)$", path)
    if match:
        return "stdlib " + match.group(1).split("/", 1)[0].removesuffix(".py")
    return path or "?"


# Standard-library modules that do the work of an event loop or threads keep their time; the others (inspect,
# json, typing, copy...) are helpers, and their time is charged to the package that called them.
_STDLIB_OWN = ("stdlib asyncio", "stdlib selectors", "stdlib threading", "stdlib concurrent", "stdlib socket")


def _owner(frames: list[tuple[str, str]]) -> str:
    """The package a sample's time belongs to: the leaf's, or for a stdlib helper its nearest non-stdlib caller's."""
    for _, file in reversed(frames):
        package = _package(file)
        if not package.startswith("stdlib ") or package in _STDLIB_OWN:
            return package
    return _package(frames[-1][1])


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw)
        frames.append((match.group("function"), match.group("file")) if match else (raw, ""))
    return frames


def read(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """The samples of a ``py-spy --format raw`` file: (frames from the root to the leaf, count)."""
    samples = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples.append((_frames(stack), int(count)))
    return samples


def breakdown(path: Path, cpu: float, runs: int, tokens: int, top: int = 12) -> str:
    """Markdown tables: the worker's ``cpu`` seconds shared out by self time per package and by inclusive time per
    app function, per run and per delivered token."""
    samples = read(path)
    total = sum(count for _, count in samples) or 1
    by_package: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    by_caller: collections.Counter[str] = collections.Counter()
    for frames, count in samples:
        owner = _owner(frames)
        by_package[owner] += count
        own = [f"{_package(file)}.{function}" for function, file in frames if _own(file)]
        for name in set(own):
            by_function[name] += count
        by_caller[f"{owner} in {own[-1]}" if own else f"{owner}, outside the measured code"] += count

    def rows(counter: collections.Counter[str]) -> list[str]:
        lines = []
        for name, count in counter.most_common(top):
            share = count / total
            lines.append(
                f"| `{name}` | {share * 100:.1f} % | {share * cpu / max(runs, 1) * 1000:.2f} ms "
                f"| {share * cpu / max(tokens, 1) * 1e6:.0f} µs |"
            )
        return lines

    head = "| {} | share of worker CPU | per run | per delivered token |\n|---|---|---|---|"
    return "\n".join(
        [
            f"{total} samples; worker CPU {cpu:.2f} s for {runs} runs and {tokens} delivered tokens "
            f"({cpu / max(runs, 1) * 1000:.1f} ms per run, {cpu / max(tokens, 1) * 1e6:.0f} µs per token).",
            "",
            "Self time, by the package whose code was running (a stdlib helper's, such as inspect or json, is charged "
            "to its caller's package):",
            "",
            head.format("package"),
            *rows(by_package),
            "",
            "The same, split by the measured code's function nearest the running code (where the app or the floor "
            "called into that package):",
            "",
            head.format("package in function"),
            *rows(by_caller),
        ]
        + (
            [
                "",
                "Inclusive time of the measured code's functions (with everything they call; a sample counts once "
                "per function):",
                "",
                head.format("function"),
                *rows(by_function),
            ]
            if by_function
            else []
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="a py-spy --format raw file")
    parser.add_argument("--cpu", type=float, required=True, help="the worker's CPU seconds over the profile")
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    print(breakdown(args.profile, args.cpu, args.runs, args.tokens, args.top))


if __name__ == "__main__":
    main()
