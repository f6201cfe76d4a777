"""What `wait_replicas` costs: the Redis replay check with and without WAIT, side by side.

Starts its own master and replica on loopback (ports 6450-6499, tests/redisfarm.py) and stops
them after. `run()` returns the figures for bench/run.py; `python bench/fleet.py` prints them.
Batches alternate between the two sides, as everywhere in bench/, because the machine is shared.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redisfarm import Farm, FarmUnavailable  # noqa: E402
from wimse_wpt import RedisReplayCache  # noqa: E402
from wimse_wpt.replay import replay_key  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
SENDER = "wimse://example.com/bench"


async def _measure(plain: RedisReplayCache, durable: RedisReplayCache, batches: int, per_batch: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"plain": [], "wait1": []}
    for _ in range(batches):
        for name, cache in (("plain", plain), ("wait1", durable)):
            for _ in range(per_batch):
                key = replay_key(SENDER, secrets.token_urlsafe(16))
                started = time.perf_counter()
                assert await cache.check_and_record(key, 30.0, SENDER)
                times[name].append((time.perf_counter() - started) * 1e6)
    return times


def run() -> dict[str, Any]:
    """p50/p99 (us) of one replay check on a master with one replica: without WAIT, and with
    ``wait_replicas=1``; or {"skipped": reason} when redis-server cannot be started."""
    try:
        with Farm() as farm:
            master = farm.standalone()
            farm.replica(master)

            async def main() -> dict[str, list[float]]:
                plain = RedisReplayCache(master.url, prefix="bench:plain:")
                durable = RedisReplayCache(master.url, prefix="bench:wait:", wait_replicas=1, wait_timeout=0.5)
                await _measure(plain, durable, 2, 50)  # warm both pools
                try:
                    return await _measure(plain, durable, 10 if QUICK else 40, 50)
                finally:
                    await plain.aclose()
                    await durable.aclose()

            times = asyncio.run(main())
    except FarmUnavailable as exc:
        return {"skipped": str(exc)}

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"p50_us": round(statistics.median(ordered), 1), "p99_us": round(ordered[int(len(ordered) * 0.99)], 1)}

    plain, wait1 = summary(times["plain"]), summary(times["wait1"])
    return {"checks_each": len(times["plain"]), "plain": plain, "wait_replicas_1": wait1,
            "p50_ratio": round(wait1["p50_us"] / plain["p50_us"], 2)}


def table(figures: dict[str, Any]) -> str:
    if "skipped" in figures:
        return f"Redis WAIT: skipped ({figures['skipped']})"
    plain, wait1 = figures["plain"], figures["wait_replicas_1"]
    return "\n".join([
        "| Redis replay check, master + 1 replica (loopback) | p50 us | p99 us |",
        "| --- | ---: | ---: |",
        f"| record script (wait_replicas=0) | {plain['p50_us']} | {plain['p99_us']} |",
        f"| record script + WAIT 1 (wait_replicas=1) | {wait1['p50_us']} | {wait1['p99_us']} |",
        f"\nWAIT costs {figures['p50_ratio']}x at p50 ({figures['checks_each']} checks each, interleaved).",
    ])


if __name__ == "__main__":
    print(table(run()))
