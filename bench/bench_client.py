"""CPU of one streamed model call: ``litellm.acompletion`` vs the app's lean client vs raw httpx.

    .venv/bin/python -m bench.bench_client            # 100 calls of 1 and of 200 chunks per client
    .venv/bin/python -m bench.bench_client --calls 20 # quicker

Two fake servers (``bench.fake_server``) run in their own processes, so only the client's CPU is
counted (``time.process_time`` of this process). Each client makes ``--calls`` streamed calls of a
1-chunk reply (the per-call setup) and of a 200-chunk reply; the per-chunk cost is the difference
divided by 199. Calls run one after another on one event loop, after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")

MESSAGES = [{"role": "user", "content": "Say something."}]
LONG = 200


@contextlib.contextmanager
def server(words: int) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_server", "--token-delay", "0", "--words", str(words)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


async def via_litellm(url: str) -> int:
    from chatmodel_app.llm import get_litellm

    litellm = get_litellm()
    stream = await litellm.acompletion(
        model="openai/fake-model", api_base=url, api_key="sk-bench", messages=MESSAGES, stream=True, max_retries=0
    )
    return sum([1 async for _ in stream])


async def via_lean(url: str) -> int:
    from chatmodel_app.llm import lean

    prepared = {"model": "openai/fake-model", "api_base": url, "messages": MESSAGES, "stream": True, "timeout": 60}
    plan = lean.Plan(prepared, "sk-bench", "OPENAI_API_KEY", lean.supported_params("fake-model"))
    return sum([1 async for _ in await lean.aopen_stream(plan)])


_raw_client = None


async def via_httpx(url: str) -> int:
    import httpx

    global _raw_client
    _raw_client = _raw_client or httpx.AsyncClient(timeout=60)
    body = {"model": "fake-model", "messages": MESSAGES, "stream": True}
    count = 0
    async with _raw_client.stream(
        "POST", url + "/chat/completions", json=body, headers={"Authorization": "Bearer sk-bench"}
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                json.loads(line[5:])
                count += 1
    return count


async def cpu_per_call(call: Callable[[str], Awaitable[int]], url: str, calls: int) -> tuple[float, int]:
    for _ in range(5):
        await call(url)
    start = time.process_time()
    chunks = 0
    for _ in range(calls):
        chunks = await call(url)
    return (time.process_time() - start) / calls, chunks


async def main(calls: int) -> None:
    from chatmodel_app.llm import get_litellm

    get_litellm()  # imported before timing: its import is a start-up cost, not a call's
    with server(1) as short_url, server(LONG) as long_url:
        print(f"{'client':<24}{'CPU per call (1 chunk)':>24}{'CPU per chunk':>16}")
        for name, call in (("litellm.acompletion", via_litellm), ("lean client", via_lean), ("raw httpx", via_httpx)):
            short, short_chunks = await cpu_per_call(call, short_url, calls)
            long, long_chunks = await cpu_per_call(call, long_url, calls)
            per_chunk = (long - short) / max(1, long_chunks - short_chunks)
            print(f"{name:<24}{short * 1e3:>21.2f} ms{per_chunk * 1e6:>13.1f} µs", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    asyncio.run(main(parser.parse_args().calls))
