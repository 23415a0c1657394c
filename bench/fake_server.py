"""The fake OpenAI-compatible model server of ``chatmodel_app.testing``, in a process of its own, at a fixed pace.

    python -m bench.fake_server --token-delay 0.002 --words 30

Prints its base URL (``http://127.0.0.1:PORT/v1``) on the first line, then serves until its
standard input closes. Every request gets the same reply: ``--words`` words, streamed one per
chunk every ``--token-delay`` seconds after ``--first-token-delay``; a request without
``stream`` gets the whole reply after the time the stream would have taken. Unlike the test
fixture, the server sets TCP_NODELAY on its connections.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from chatmodel_app import testing
from chatmodel_app.testing import FakeLLMServer, FakeReply, split_into_chunks

# As real model servers do (uvicorn, nginx): without TCP_NODELAY, a reply's body waits behind its headers for the
# client's delayed ACK, about 40 ms on every kept-alive connection, which would count as the model's time.
testing._Handler.disable_nagle_algorithm = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--token-delay", type=float, required=True, help="seconds between streamed chunks")
    parser.add_argument("--words", type=int, default=30, help="words in the reply (one chunk each)")
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds before the first chunk")
    args = parser.parse_args()
    text = " ".join(f"word{i}" for i in range(args.words))
    whole = args.first_token_delay + args.token_delay * (len(split_into_chunks(text)) - 1)

    def reply(body: dict[str, Any]) -> FakeReply:
        return FakeReply(content=text, delay=args.first_token_delay if body.get("stream") else whole)

    server = FakeLLMServer(token_delay=args.token_delay)
    server.default_reply = reply
    with server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe (or dies)


if __name__ == "__main__":
    main()
