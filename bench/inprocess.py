"""The example app without a server: CPU per request of the ASGI app called in process.

    .venv/bin/python bench/inprocess.py

Calls the app the end-to-end benchmark serves (examples/service.py) directly with ASGI scopes
carrying the same headers wrk sends, a fresh proof each, in three modes side by side per round:
``off`` (the bare endpoint), ``on`` (middleware and endpoint as served), and ``verify stubbed``
(the same, with ``Verifier.verify`` replaced by a coroutine returning an already verified
workload: what the middleware and the endpoint add around the verification). Thread CPU time,
medians of the rounds. Set against `make bench`'s server figures (``e2e_standard``), it tells
how much of the CPU the middleware adds in the server is the verification measured here, and
how much the surroundings (uvicorn, FastAPI, their code between two requests) add to the same
code. Not part of `make bench`.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE))

from wimse_wpt import DevIssuer, MemoryReplayCache, SigningKey, VerifiedWorkload, mint_wpt  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_INPROCESS_ROUNDS", "7"))
REQUESTS = int(os.environ.get("BENCH_INPROCESS_REQUESTS", "3000"))
ORIGIN = "http://127.0.0.1:8000"

issuer = DevIssuer("example.com")
_anchors = Path(tempfile.mkdtemp(prefix="wimse-wpt-inprocess-")) / "anchors.json"
_anchors.write_text(json.dumps({"example.com": issuer.jwks}))
os.environ.update(WIMSE_TRUST_ANCHORS=str(_anchors), WIMSE_ORIGINS=ORIGIN, WIMSE_LOG_LEVEL="ERROR")

import service  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from micro import StatusRecorder, post_path_scope, receive_json_body  # noqa: E402

# As bench/e2e_app.py: room for every proof of the run.
service.verifier.replay_cache = MemoryReplayCache(2_000_000, max_per_workload=2_000_000)

bare = FastAPI()


@bare.post("/path")
async def bare_path() -> dict[str, str | None]:
    return {"workload": None}


KEY = SigningKey.generate("Ed25519")
WIT = issuer.issue_wit("wimse://example.com/bench", KEY)


def scopes(n: int) -> list[dict[str, Any]]:
    """n requests as uvicorn hands them over, with the headers bench/e2e.py's wrk script sends."""
    out = []
    for _ in range(n):
        proof = mint_wpt(KEY, WIT, ORIGIN + "/path", lifetime=280)
        out.append(post_path_scope([
            (b"host", b"127.0.0.1:8000"), (b"workload-identity-token", WIT.encode()),
            (b"content-type", b"application/json"), (b"workload-proof-token", proof.encode()),
            (b"content-length", b"2"),
        ], state={}))
    return out


send = StatusRecorder()


async def cpu_per_request(app: Any, batch: list[dict[str, Any]]) -> float:
    started = time.thread_time()
    for scope in batch:
        await app(scope, receive_json_body, send)
    return (time.thread_time() - started) / len(batch) * 1e6


async def main() -> None:
    verify = service.verifier.verify
    one = scopes(1)[0]
    verified: VerifiedWorkload = await verify(one["headers"], path="/path")

    async def stubbed(*_args: Any, **_kwargs: Any) -> VerifiedWorkload:
        return verified

    runs: dict[str, list[float]] = {"off": [], "on": [], "verify stubbed": []}
    for _ in range(ROUNDS):
        batch = scopes(REQUESTS)
        runs["off"].append(await cpu_per_request(bare, batch))
        runs["on"].append(await cpu_per_request(service.app, batch))
        service.verifier.verify = stubbed  # type: ignore[method-assign]
        try:
            runs["verify stubbed"].append(await cpu_per_request(service.app, batch))
        finally:
            service.verifier.verify = verify  # type: ignore[method-assign]
    if set(send.statuses) != {200}:
        raise SystemExit(f"not every request was answered 200: {sorted(set(send.statuses))}")
    medians = {mode: statistics.median(values) for mode, values in runs.items()}
    for mode, values in runs.items():
        print(f"{mode:>15}: {medians[mode]:6.1f} us CPU/request (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    print(f"middleware on adds {medians['on'] - medians['off']:.1f} us; "
          f"around the verification (stubbed - off): {medians['verify stubbed'] - medians['off']:.1f} us")


if __name__ == "__main__":
    asyncio.run(main())
