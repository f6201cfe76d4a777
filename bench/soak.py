"""`make soak`: the example service with 4 uvicorn workers on Redis under steady load.

Starts its own redis-server (loopback, a port in 6450-6499) and the example service, sends
requests at a fixed rate for SOAK_SECONDS (default 60), then stops both and prints:
requests served, the share refused and why, p50/p99 latency, the replay store's live entries over
time (they must level off at accepted rate x proof lifetime, not grow), Redis memory, and the
workers' resident memory (RSS from /proc) at start and end.

Environment: SOAK_SECONDS (60), SOAK_RATE (requests/s, 50), SOAK_LIFETIME (WPT lifetime in
seconds, 10: short, so the live entries level off well inside the run), SOAK_REPLAYS (share of
requests that deliberately resend an accepted proof, 0.05: each must be refused wpt-replayed).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redisfarm import Farm, FarmUnavailable, Server, poll  # noqa: E402
from tests.servers import EXAMPLES, free_port  # noqa: E402
from wimse_wpt import DevIssuer, SigningKey, mint_wpt  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
RATE = float(os.environ.get("SOAK_RATE", "50"))
LIFETIME = float(os.environ.get("SOAK_LIFETIME", "10"))
REPLAYS = float(os.environ.get("SOAK_REPLAYS", "0.05"))
WORKERS = 4
MAX_IN_FLIGHT = 64  # = the client's connections: beyond it a request would queue with its proof ageing
SAMPLE_EVERY = 5.0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def workers_rss(parent: int) -> list[float]:
    """RSS of each uvicorn worker (the parent's children that run Python, not its resource tracker)."""
    pids = [pid for pid in children(parent) if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return sorted(round(rss_mb(pid), 1) for pid in pids)


def start_service(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "service:app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--workers", str(WORKERS), "--no-access-log"]
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT)

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the example service exited with {process.returncode}")
        healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        return healthy and len(workers_rss(process.pid)) == WORKERS

    poll(lambda: _quiet(up), "the example service and its workers", timeout=60, interval=0.2)
    return process


def _quiet(check: Any) -> bool:
    try:
        return bool(check())
    except httpx.TransportError:
        return False


class Load:
    def __init__(self, issuer: DevIssuer, origin: str) -> None:
        self.origin = origin
        self.key = SigningKey.generate("ES256")
        self.wit = issuer.issue_wit("wimse://example.com/soak", self.key)
        self.accepted: list[dict[str, str]] = []
        self.results: list[tuple[str, bool, float]] = []  # (outcome, deliberate replay, seconds)
        self.dropped = 0  # not sent: the generator had MAX_IN_FLIGHT requests waiting

    def proof(self) -> tuple[dict[str, str], bool]:
        if self.accepted and random.random() < REPLAYS:
            return random.choice(self.accepted[-200:]), True
        wpt = mint_wpt(self.key, self.wit, self.origin + "/path", lifetime=LIFETIME)
        return {"Workload-Identity-Token": self.wit, "Workload-Proof-Token": wpt}, False

    async def one(self, client: httpx.AsyncClient) -> None:
        headers, replay = self.proof()
        started = time.perf_counter()
        try:
            response = await client.post("/path", headers=headers)
            outcome = "accepted" if response.status_code == 200 else str(response.json().get("code"))
        except httpx.HTTPError as exc:
            outcome = f"transport:{type(exc).__name__}"
        self.results.append((outcome, replay, time.perf_counter() - started))
        if outcome == "accepted" and not replay:
            self.accepted.append(headers)

    async def run(self, seconds: float, on_sample: Any) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.origin, limits=limits, timeout=10) as client:
            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            sent = 0
            next_sample = SAMPLE_EVERY
            while (elapsed := time.monotonic() - start) < seconds:
                due = int(elapsed * RATE) + 1
                while sent < due:
                    sent += 1
                    if len(tasks) >= MAX_IN_FLIGHT:
                        self.dropped += 1
                        continue
                    task = asyncio.create_task(self.one(client))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if elapsed >= next_sample:
                    on_sample(elapsed)
                    next_sample += SAMPLE_EVERY
                await asyncio.sleep(max(0.0, (sent / RATE) - (time.monotonic() - start)))
            if tasks:
                await asyncio.wait(tasks)
            on_sample(time.monotonic() - start)


def live_entries(client: Any) -> int:
    """Live replay entries: members of the senders' sorted sets (``<prefix>{<sha256>}``, scored
    by expiry in Redis milliseconds) not yet expired on the Redis clock."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    sets = [name for name in client.scan_iter(match="wimse-wpt:jti:{*", count=1000) if b"{health}" not in name]
    return sum(int(client.zcount(name, f"({now_ms}", "+inf")) for name in sets)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def main() -> int:
    with Farm() as farm:
        try:
            redis_server: Server = farm.standalone("--maxmemory-policy", "noeviction")
        except FarmUnavailable as exc:
            print(f"soak: cannot start redis-server: {exc}")
            return 1
        issuer = DevIssuer("example.com")
        anchors = farm.dir / "anchors.json"
        anchors.write_text(json.dumps({"example.com": issuer.jwks}))
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        env = {"WIMSE_TRUST_ANCHORS": str(anchors), "WIMSE_REPLAY_STORE": redis_server.url,
               "WIMSE_ORIGINS": origin, "WIMSE_LOG_LEVEL": "WARNING"}
        service = start_service(env, port)
        try:
            load = Load(issuer, origin)
            asyncio.run(Load(issuer, origin).run(2.0, lambda _: None))  # warm every worker's connections
            redis_client = redis_server.client()
            # No flush of the warm-up's entries: the workers would take it for a loss (their canary
            # gone) and refuse for a whole lifetime. They expire within the first lifetime.
            rss_start = workers_rss(service.pid)
            samples: list[tuple[float, int, float]] = []

            def sample(elapsed: float) -> None:
                samples.append((elapsed, live_entries(redis_client), redis_client.info("memory")["used_memory"] / 1e6))

            sample(0.0)
            asyncio.run(load.run(SECONDS, sample))
            rss_end = workers_rss(service.pid)
        finally:
            service.terminate()
            try:
                service.wait(timeout=15)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
    text = report(load, samples, rss_start, rss_end)
    print(text)
    return 1 if ("FAILED" in text or "WARNING" in text) else 0


def report(load: Load, samples: list[tuple[float, int, float]], rss_start: list[float], rss_end: list[float]) -> str:
    results = load.results
    total = len(results)
    outcomes = Counter(o for o, _, _ in results)
    refusals = Counter(o for o, _, _ in results if o != "accepted")
    fresh = [r for r in results if not r[1]]
    replays = [r for r in results if r[1]]
    accepted_fresh = sum(1 for o, _, _ in fresh if o == "accepted")
    unexpected = Counter(o for o, _, _ in fresh if o != "accepted")
    replay_outcomes = Counter(o for o, _, _ in replays)
    latencies = [s * 1000 for _, _, s in results]
    ok_latencies = [s * 1000 for o, _, s in results if o == "accepted"]
    rate = accepted_fresh / SECONDS
    plateau = rate * LIFETIME
    tail = [count for elapsed, count, _ in samples if elapsed >= LIFETIME + SAMPLE_EVERY]
    level = f"{min(tail)}-{max(tail)}" if tail else "n/a (run shorter than the lifetime)"
    lines = [
        f"soak: {SECONDS:.0f} s at {RATE:.0f} requests/s target, {WORKERS} uvicorn workers, Redis on loopback, "
        f"WPT lifetime {LIFETIME:.0f} s, {REPLAYS:.0%} deliberate replays",
        f"requests: {total} sent ({total / SECONDS:.1f}/s), {load.dropped} not sent (generator behind)",
        f"served (200): {outcomes['accepted']} ({outcomes['accepted'] / max(total, 1):.1%})",
        f"refused: {total - outcomes['accepted']} ({(total - outcomes['accepted']) / max(total, 1):.1%}), by code: "
        + (", ".join(f"{code} {n}" for code, n in sorted(refusals.items())) or "none"),
        f"  deliberate replays: {len(replays)}, outcomes {dict(replay_outcomes)} (never 'accepted')",
        f"  fresh proofs refused: {sum(unexpected.values())} {dict(unexpected) if unexpected else ''}",
        f"latency ms, all: p50 {percentile(latencies, 0.5):.2f} p99 {percentile(latencies, 0.99):.2f}; "
        f"accepted: p50 {percentile(ok_latencies, 0.5):.2f} p99 {percentile(ok_latencies, 0.99):.2f}",
        "replay store live entries over time (s: entries, Redis used_memory MB): "
        + ", ".join(f"{elapsed:.0f}: {count} ({mb:.2f})" for elapsed, count, mb in samples),
        f"  expected level: accepted rate {rate:.1f}/s x lifetime {LIFETIME:.0f} s = {plateau:.0f}; "
        f"observed after the first lifetime: {level}",
        f"workers' RSS MB, start: {rss_start}, end: {rss_end}",
        f"machine: {os.cpu_count()} cores, load average at the end {Path('/proc/loadavg').read_text().split()[0]}"
        " (latency depends on it: on a busy machine requests wait for a core)",
    ]
    if replays and "accepted" in replay_outcomes:
        lines.append("FAILED: a deliberate replay was accepted")
    if tail and max(tail) > plateau * 1.3 + 20:
        lines.append("WARNING: the live entries are above rate x lifetime: entries are not expiring")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
