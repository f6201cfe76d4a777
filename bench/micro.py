"""In-process benchmarks: verifier against the raw signature floor, cold and naive paths,
replay caches, and the cost of refusing bad input.

Every comparison is measured side by side: the two sides run interleaved, batch after
batch, and the reported ratio is the median of the per-pair ratios (robust on a shared,
noisy machine). Figures are microseconds per operation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import secrets
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parent))

from naive import NaiveVerifier  # noqa: E402

from wimse_wpt import (  # noqa: E402
    DevIssuer,
    MemoryReplayCache,
    RedisReplayCache,
    SigningKey,
    VerificationError,
    Verifier,
    mint_wpt,
)
from wimse_wpt.replay import replay_key  # noqa: E402

ORIGIN = "https://workload.example.com"
TARGET = ORIGIN + "/path"
QUICK = os.environ.get("BENCH_QUICK") == "1"
BATCH = 100 if QUICK else 300
REPEATS = 5 if QUICK else 15


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_verifier(key: SigningKey) -> Callable[[str], None]:
    """The floor: cryptography's own verify of a compact JWS signature, inputs pre-decoded."""
    public = key.key.public_key
    if key.alg in ("ES256",):
        algorithm = ec.ECDSA(hashes.SHA256())

        def prepare(token: str) -> tuple[bytes, bytes]:
            signing_input, _, sig = token.rpartition(".")
            raw = b64d(sig)
            return signing_input.encode(), encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))

        return lambda pair: public.verify(pair[1], pair[0], algorithm), prepare  # type: ignore[return-value]

    def prepare_ed(token: str) -> tuple[bytes, bytes]:
        signing_input, _, sig = token.rpartition(".")
        return signing_input.encode(), b64d(sig)

    return lambda pair: public.verify(pair[1], pair[0]), prepare_ed  # type: ignore[return-value]


def headers_for(wit: str, wpt: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"workload.example.com"),
        (b"content-type", b"application/json"),
        (b"workload-identity-token", wit.encode()),
        (b"workload-proof-token", wpt.encode()),
    ]


def timed(run: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / count * 1e6


def side_by_side(a: Callable[[int], Callable[[], None]], b: Callable[[int], Callable[[], None]]) -> dict[str, float]:
    """Interleave batches of a and b; medians of each and of the per-pair ratio a/b."""
    times_a, times_b, ratios = [], [], []
    gc.disable()
    try:
        for repeat in range(REPEATS + 1):
            run_a, run_b = a(repeat), b(repeat)  # preparation is not timed
            ta, tb = timed(run_a, BATCH), timed(run_b, BATCH)
            if repeat == 0:
                continue  # warm-up
            times_a.append(ta)
            times_b.append(tb)
            ratios.append(ta / tb)
    finally:
        gc.enable()
    return {
        "us": round(statistics.median(times_a), 1),
        "baseline_us": round(statistics.median(times_b), 1),
        "ratio": round(statistics.median(ratios), 3),
    }


class Scene:
    """One trust domain and one workload with fresh proofs on demand."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        self.issuer = DevIssuer("example.com", alg="ES256")
        self.key = SigningKey.generate(alg)
        self.wit = self.issuer.issue_wit("wimse://example.com/bench", self.key)
        self.loop = asyncio.new_event_loop()

    def verifier(self, cls: type[Verifier] = Verifier) -> Verifier:
        return cls({"example.com": self.issuer.jwks}, [ORIGIN], replay_cache=MemoryReplayCache(2_000_000, max_per_workload=2_000_000))

    def proofs(self, count: int, wit: str | None = None, key: SigningKey | None = None) -> list[str]:
        return [mint_wpt(key or self.key, wit or self.wit, TARGET) for _ in range(count)]

    def run_verifier(self, verifier: Verifier, requests: list[list[tuple[bytes, bytes]]]) -> Callable[[], None]:
        async def batch() -> None:
            for headers in requests:
                await verifier.verify(headers, path="/path", method="POST")

        return lambda: self.loop.run_until_complete(batch())


def steady(alg: str) -> dict[str, float]:
    scene = Scene(alg)
    verifier = scene.verifier()
    check, prepare = raw_verifier(scene.key)

    def ours(_: int) -> Callable[[], None]:
        return scene.run_verifier(verifier, [headers_for(scene.wit, p) for p in scene.proofs(BATCH)])

    def raw(_: int) -> Callable[[], None]:
        pairs = [prepare(p) for p in scene.proofs(BATCH)]
        return lambda: [check(pair) for pair in pairs] and None  # type: ignore[func-returns-value]

    return side_by_side(ours, raw)


def cold(alg: str) -> dict[str, float]:
    """A new WIT on every call: the WIT's signature, the key import and the WPT's signature."""
    scene = Scene(alg)
    verifier = scene.verifier()
    check, prepare = raw_verifier(scene.key)
    issuer_key = SigningKey(scene.issuer.key.key, "ES256")
    check_wit, prepare_wit = raw_verifier(issuer_key)

    def fresh() -> tuple[str, str]:
        key = SigningKey.generate(alg)
        wit = scene.issuer.issue_wit("wimse://example.com/bench", key)
        return wit, mint_wpt(key, wit, TARGET)

    def ours(_: int) -> Callable[[], None]:
        pairs = [fresh() for _ in range(BATCH)]
        return scene.run_verifier(verifier, [headers_for(w, p) for w, p in pairs])

    def raw(_: int) -> Callable[[], None]:
        pairs = [fresh() for _ in range(BATCH)]
        wits = [prepare_wit(w) for w, _ in pairs]
        wpts = [prepare(p) for _, p in pairs]
        # Two raw verifies a request. Each WPT was signed by its own fresh key, so the scene
        # key refuses it: the same work as a successful verify, without importing keys.
        def run() -> None:
            for wit_pair, wpt_pair in zip(wits, wpts, strict=True):
                check_wit(wit_pair)
                with contextlib.suppress(Exception):
                    check(wpt_pair)

        return run

    return side_by_side(ours, raw)


def naive(alg: str) -> dict[str, float]:
    scene = Scene(alg)
    ours_verifier, naive_verifier = scene.verifier(), scene.verifier(NaiveVerifier)

    def ours(_: int) -> Callable[[], None]:
        return scene.run_verifier(ours_verifier, [headers_for(scene.wit, p) for p in scene.proofs(BATCH)])

    def theirs(_: int) -> Callable[[], None]:
        return scene.run_verifier(naive_verifier, [headers_for(scene.wit, p) for p in scene.proofs(BATCH)])

    result = side_by_side(theirs, ours)  # ratio = naive time / ours = our speed-up
    return {"us": result["baseline_us"], "naive_us": result["us"], "speedup": result["ratio"]}


def rejection(alg: str) -> dict[str, Any]:
    """Time to refuse malformed and oversized tokens, against one raw verify."""
    scene = Scene(alg)
    verifier = scene.verifier()
    check, prepare = raw_verifier(scene.key)
    scene.loop.run_until_complete(verifier.verify(headers_for(scene.wit, scene.proofs(1)[0]), path="/path"))
    cases = {
        "oversized_wit": headers_for("a" * 65536, "b"),
        "oversized_wpt": headers_for(scene.wit, "x" * 65536),
        "malformed_wpt": headers_for(scene.wit, "eyJhbGciOiJFZERTQSJ9.!!!.abc"),
        "garbage_wit": headers_for("e30.e30.e30", "e30.e30.e30"),
    }
    out: dict[str, Any] = {}
    for name, headers in cases.items():
        async def refuse_all(headers: list[tuple[bytes, bytes]] = headers) -> None:
            for _ in range(BATCH):
                with contextlib.suppress(VerificationError):
                    await verifier.verify(headers, path="/path")

        def ours(_: int) -> Callable[[], None]:
            return lambda: scene.loop.run_until_complete(refuse_all())

        def raw(_: int) -> Callable[[], None]:
            pairs = [prepare(p) for p in scene.proofs(BATCH)]
            return lambda: [check(pair) for pair in pairs] and None  # type: ignore[func-returns-value]

        out[name] = side_by_side(ours, raw)
    return out


def replay_memory() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in (100_000, 1_000_000):
        keys = [replay_key("wimse://example.com/bench", secrets.token_urlsafe(16)) for _ in range(size)]
        # 100 senders, each within its default share (a tenth of the cache).
        owners = [f"wimse://example.com/bench-{i % 100}" for i in range(100)]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        cache = MemoryReplayCache(maxsize=size)
        for i, key in enumerate(keys):
            cache.check_and_record_sync(key, 300.0, owners[i % 100])
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        # The rate in a separate pass: tracemalloc slows every allocation.
        del cache
        gc.collect()
        timed_cache = MemoryReplayCache(maxsize=size)
        start = time.perf_counter()
        for i, key in enumerate(keys):
            timed_cache.check_and_record_sync(key, 300.0, owners[i % 100])
        elapsed = time.perf_counter() - start
        del timed_cache
        # The keys exist before the cache does; the entry's share of them is its 32-byte
        # digest object (65 bytes), which the cache keeps alive: count it.
        per_entry = (after - before) / size + sys.getsizeof(keys[0])
        out[f"{size}"] = {"bytes_per_entry": round(per_entry), "inserts_per_s": round(size / elapsed)}
        del keys
    return out


def replay_redis(url: str) -> dict[str, float]:
    loop = asyncio.new_event_loop()
    redis_cache = RedisReplayCache(url, prefix=f"wimse-wpt-bench:{secrets.token_hex(4)}:", max_per_workload=10_000_000)
    memory = MemoryReplayCache(2_000_000, max_per_workload=2_000_000)

    def batch(cache: Any) -> Callable[[int], Callable[[], None]]:
        def make(_: int) -> Callable[[], None]:
            keys = [replay_key("wimse://example.com/bench", secrets.token_urlsafe(16)) for _ in range(BATCH)]

            async def run() -> None:
                for key in keys:
                    await cache.check_and_record(key, 60.0, "wimse://example.com/bench")

            return lambda: loop.run_until_complete(run())

        return make

    result = side_by_side(batch(redis_cache), batch(memory))
    loop.run_until_complete(redis_cache.aclose())
    return {"redis_us": result["us"], "memory_us": result["baseline_us"], "ratio": result["ratio"]}


def run_all(redis_url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for alg in ("Ed25519", "ES256"):
        results[f"steady_{alg}"] = steady(alg)
        results[f"cold_{alg}"] = cold(alg)
        results[f"naive_{alg}"] = naive(alg)
        results[f"reject_{alg}"] = rejection(alg)
    results["replay_memory"] = replay_memory()
    if redis_url:
        results["replay_redis"] = replay_redis(redis_url)
    return results
