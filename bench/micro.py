"""In-process benchmarks: verifier against the raw signature floor, cold and naive paths,
replay caches, and the cost of refusing bad input.

Every comparison is measured side by side: the two sides run interleaved, batch after
batch (each going first half of the time), and the reported ratio is the median of the
per-pair ratios (robust on a shared, noisy machine). Figures are microseconds of the
benchmark thread's CPU time per operation (time.thread_time: time spent waiting for a core
on a busy machine is not counted), except the Redis comparison, which is wall time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import heapq
import os
import secrets
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachetools import TLRUCache, TTLCache
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fastapi import FastAPI, Request

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
    tokens,  # noqa: E402
)
from wimse_wpt.fastapi import Workload, workload_of  # noqa: E402  (module level: FastAPI reads the annotations)
from wimse_wpt.middleware import SCOPE_KEY, Judged  # noqa: E402
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


def timed(run: Callable[[], None], count: int, clock: Callable[[], float] = time.thread_time) -> float:
    start = clock()
    run()
    return (clock() - start) / count * 1e6


def side_by_side(
    a: Callable[[int], Callable[[], None]],
    b: Callable[[int], Callable[[], None]],
    clock: Callable[[], float] = time.thread_time,
) -> dict[str, float]:
    """Interleave batches of a and b (alternating which goes first); medians of each and of the
    per-pair ratio a/b."""
    times_a, times_b, ratios = [], [], []
    gc.disable()
    try:
        for repeat in range(REPEATS + 1):
            run_a, run_b = a(repeat), b(repeat)  # preparation is not timed
            if repeat % 2:  # each side goes first half of the time: no first-mover bias
                ta, tb = timed(run_a, BATCH, clock), timed(run_b, BATCH, clock)
            else:
                tb, ta = timed(run_b, BATCH, clock), timed(run_a, BATCH, clock)
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


def post_path_scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    """A POST /path as uvicorn hands it to the app (for benchmarks that call an app in process)."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/path", "raw_path": b"/path", "query_string": b"", "root_path": "",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "headers": headers, **extra,
    }


async def receive_json_body() -> dict[str, Any]:
    """An ASGI receive: the request's whole body, ``{}``."""
    return {"type": "http.request", "body": b"{}", "more_body": False}


class StatusRecorder:
    """An ASGI send that keeps the status of every response."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


class Scene:
    """One trust domain and one workload with fresh proofs on demand."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        self.issuer = DevIssuer("example.com", alg="ES256")
        self.key = SigningKey.generate(alg)
        self.wit = self.issuer.issue_wit("wimse://example.com/bench", self.key)
        self.loop = asyncio.new_event_loop()

    def verifier(self, cls: type[Verifier] = Verifier) -> Verifier:
        cache = MemoryReplayCache(2_000_000, max_per_workload=2_000_000)
        return cls({"example.com": self.issuer.jwks}, [ORIGIN], replay_cache=cache)

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
                try:  # noqa: SIM105 (contextlib.suppress: its two calls per request would count as ours)
                    await verifier.verify(headers, path="/path")
                except VerificationError:
                    pass

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
        for n, key in enumerate(keys):
            # A new float per proof, as the verifier computes it (exp + leeway - now): made
            # while tracing, so that it counts if the cache keeps it.
            cache.check_and_record_sync(key, 300.0 - n * 1e-6, owners[n % 100])
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        # The rate in a separate pass: tracemalloc slows every allocation.
        del cache
        gc.collect()
        timed_cache = MemoryReplayCache(maxsize=size)
        start = time.perf_counter()
        for n, key in enumerate(keys):
            timed_cache.check_and_record_sync(key, 300.0 - n * 1e-6, owners[n % 100])
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

    # Wall time here: a Redis round trip is mostly waiting, which CPU time would not count.
    result = side_by_side(batch(redis_cache), batch(memory), clock=time.perf_counter)
    loop.run_until_complete(redis_cache.aclose())
    return {"redis_us": result["us"], "memory_us": result["baseline_us"], "ratio": result["ratio"]}


def ed25519_backends() -> dict[str, Any]:
    """The package's Ed25519 check (libsodium when PyNaCl imports) against one raw cryptography
    verify of the same signatures: the floor the steady figures are measured against."""
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key()
    check = tokens._eddsa(public)
    messages = [secrets.token_bytes(400) for _ in range(BATCH)]
    pairs = [(m, private.sign(m)) for m in messages]

    def ours(_: int) -> Callable[[], None]:
        return lambda: [check(m, sig) for m, sig in pairs] and None  # type: ignore[func-returns-value]

    def raw(_: int) -> Callable[[], None]:
        return lambda: [public.verify(sig, m) for m, sig in pairs] and None  # type: ignore[func-returns-value]

    return {"backend": tokens.ED25519_BACKEND, **side_by_side(ours, raw)}


# --- the replay cache: what cachetools offers, side by side ----------------------------------
#
# Each variant answers "first time?" for a key with a TTL and refuses when full of live entries,
# as MemoryReplayCache does. Only the bookkeeping differs.


class _Full(Exception):
    pass


def _checker(entries: Any, maxsize: int, value: Callable[[float], Any]) -> Callable[[bytes, float], bool]:
    """The check-and-record every cachetools variant shares; only what it stores differs."""

    def check(key: bytes, ttl: float) -> bool:
        if key in entries:
            return False
        if len(entries) >= maxsize:
            entries.expire()
            if len(entries) >= maxsize:
                raise _Full
        entries[key] = value(ttl)
        return True

    return check


def _tlru_value_ttl(maxsize: int, timer: Callable[[], float]) -> Callable[[bytes, float], bool]:
    """TLRUCache storing the TTL as the value; ttu adds it to now."""
    entries: TLRUCache[bytes, float] = TLRUCache(maxsize=maxsize, ttu=lambda _k, ttl, now: now + ttl, timer=timer)
    return _checker(entries, maxsize, lambda ttl: ttl)


def _tlru_value_expiry(maxsize: int, timer: Callable[[], float]) -> Callable[[bytes, float], bool]:
    """TLRUCache storing the absolute expiry as the value, ttu returning it: one float an entry."""
    entries: TLRUCache[bytes, float] = TLRUCache(maxsize=maxsize, ttu=lambda _k, expires, _now: expires, timer=timer)
    return _checker(entries, maxsize, lambda ttl: timer() + ttl)


def _ttl_fixed(maxsize: int, timer: Callable[[], float]) -> Callable[[bytes, float], bool]:
    """TTLCache with one TTL for all (the longest a proof can need), value None. Correct only
    with that bound known up front; entries then live the longest TTL, not their own."""
    longest = 330.0
    entries: TTLCache[bytes, None] = TTLCache(maxsize=maxsize, ttl=longest, timer=timer)

    def value(ttl: float) -> None:
        if ttl > longest:
            raise ValueError("ttl above the fixed bound")

    return _checker(entries, maxsize, value)


def _memory_replay_cache(maxsize: int, timer: Callable[[], float]) -> Callable[[bytes, float], bool]:
    """MemoryReplayCache itself (TLRUCache, owner as the value, exact per-sender counts), one sender."""
    cache = MemoryReplayCache(maxsize, max_per_workload=maxsize, timer=timer)
    return lambda key, ttl: cache.check_and_record_sync(key, ttl, "wimse://example.com/bench")


def _dict_heap_reference(maxsize: int, timer: Callable[[], float]) -> Callable[[bytes, float], bool]:
    """Not cachetools, for reference only (the design keeps the replay cache on cachetools): a
    dict of expiries and a heap of (expiry, key), what a cache written for this one job costs."""
    expiries: dict[bytes, float] = {}
    heap: list[tuple[float, bytes]] = []

    def check(key: bytes, ttl: float) -> bool:
        now = timer()
        while heap and heap[0][0] <= now:
            expires, old = heapq.heappop(heap)
            if expiries.get(old) == expires:
                del expiries[old]
        if expiries.get(key, 0.0) > now:
            return False
        if len(expiries) >= maxsize:
            raise _Full
        expiries[key] = expires = now + ttl
        heapq.heappush(heap, (expires, key))
        return True

    return check


REPLAY_VARIANTS: dict[str, Callable[[int, Callable[[], float]], Callable[[bytes, float], bool]]] = {
    "memory_replay_cache": _memory_replay_cache,
    "tlru_value_ttl": _tlru_value_ttl,
    "tlru_value_expiry": _tlru_value_expiry,
    "ttl_fixed_value_none": _ttl_fixed,
    "dict_heap_not_cachetools": _dict_heap_reference,
}


def replay_alternatives() -> dict[str, Any]:
    """Bytes per entry (tracemalloc, at 100k entries, the key's digest object included) and the
    cost of one check-and-record: while filling, and at steady state (full, one entry expiring
    per insert), each measured side by side against MemoryReplayCache itself."""
    size = 100_000  # as replay_memory's first size, quick or not
    out: dict[str, Any] = {}
    keys = [replay_key("wimse://example.com/bench", secrets.token_urlsafe(16)) for _ in range(size)]
    for name, make in REPLAY_VARIANTS.items():
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        check = make(size, time.monotonic)
        for n, key in enumerate(keys):
            check(key, 300.0 - n * 1e-6)  # a new float per proof, as in replay_memory
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del check
        out[name] = {"bytes_per_entry": round((after - before) / size + sys.getsizeof(keys[0]))}
    del keys

    def filling(make: Callable[..., Callable[[bytes, float], bool]]) -> Callable[[int], Callable[[], None]]:
        def prepare(_: int) -> Callable[[], None]:
            check = make(2_000_000, time.monotonic)
            batch = [replay_key("w", secrets.token_urlsafe(16)) for _ in range(BATCH * 10)]
            return lambda: [check(k, 300.0) for k in batch] and None  # type: ignore[func-returns-value]

        return prepare

    def steady_state(make: Callable[..., Callable[[bytes, float], bool]]) -> Callable[[int], Callable[[], None]]:
        # 10,000 live entries on a fake clock that moves one TTL-step per insert: each insert
        # expires one. Room for 12,000, so the fixed-TTL variant (entries live 330 s) fits too.
        def prepare(_: int) -> Callable[[], None]:
            clock = [0.0]
            live = 10_000
            check = make(12_000, lambda: clock[0])
            step = 300.0 / live
            for _ in range(12_000):
                check(secrets.token_bytes(32), 300.0)
                clock[0] += step
            batch = [replay_key("w", secrets.token_urlsafe(16)) for _ in range(BATCH * 10)]

            def run() -> None:
                for k in batch:
                    clock[0] += step
                    check(k, 300.0)

            return run

        return prepare

    reference = REPLAY_VARIANTS["memory_replay_cache"]
    for name, make in REPLAY_VARIANTS.items():
        fill = side_by_side(filling(make), filling(reference))
        full = side_by_side(steady_state(make), steady_state(reference))
        out[name].update(
            insert_us=round(fill["us"] / 10, 2),
            insert_vs_current=fill["ratio"],
            steady_insert_us=round(full["us"] / 10, 2),
            steady_insert_vs_current=full["ratio"],
        )
    return out


def fastapi_dependency() -> dict[str, float]:
    """What FastAPI's resolution of the ``Workload`` dependency costs per request, against the
    same endpoint reading the workload with ``workload_of(request)``: in process, through the
    whole FastAPI app, the scope carrying a verified workload as the middleware leaves it."""
    scene = Scene("Ed25519")
    verifier = scene.verifier()
    found = scene.loop.run_until_complete(verifier.verify(headers_for(scene.wit, scene.proofs(1)[0]), path="/path"))
    by_dependency, by_call = FastAPI(), FastAPI()

    @by_dependency.post("/path")
    async def dependency(workload: Workload) -> dict[str, str]:
        return {"workload": workload.identifier}

    @by_call.post("/path")
    async def call(request: Request) -> dict[str, str]:
        return {"workload": workload_of(request).identifier}

    send = StatusRecorder()

    def side(app: Any) -> Callable[[int], Callable[[], None]]:
        def prepare(_: int) -> Callable[[], None]:
            headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"), (b"content-length", b"2")]
            scopes = [
                post_path_scope(list(headers), state={"workload": found}, **{SCOPE_KEY: Judged(verifier.profile)})
                for _ in range(BATCH)
            ]

            async def serve_all() -> None:
                for scope in scopes:
                    await app(scope, receive_json_body, send)

            return lambda: scene.loop.run_until_complete(serve_all())

        return prepare

    result = side_by_side(side(by_dependency), side(by_call))
    if set(send.statuses) != {200}:
        raise RuntimeError(f"the FastAPI endpoints answered {sorted(set(send.statuses))}")
    return {"dependency_us": result["us"], "workload_of_us": result["baseline_us"], "ratio": result["ratio"],
            "added_us": round(result["us"] - result["baseline_us"], 1)}


SECTIONS = ("ed25519", "steady", "cold", "naive", "reject", "replay", "replay_alternatives", "replay_redis", "fastapi")


def run_all(redis_url: str | None, only: frozenset[str] = frozenset(SECTIONS)) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "ed25519" in only:
        results["ed25519_verify"] = ed25519_backends()
    for alg in ("Ed25519", "ES256"):
        if "steady" in only:
            results[f"steady_{alg}"] = steady(alg)
        if "cold" in only:
            results[f"cold_{alg}"] = cold(alg)
        if "naive" in only:
            results[f"naive_{alg}"] = naive(alg)
        if "reject" in only:
            results[f"reject_{alg}"] = rejection(alg)
    if "replay" in only:
        results["replay_memory"] = replay_memory()
    if "replay_alternatives" in only:
        results["replay_alternatives"] = replay_alternatives()
    if "fastapi" in only:
        results["fastapi_dependency"] = fastapi_dependency()
    if redis_url and "replay_redis" in only:
        results["replay_redis"] = replay_redis(redis_url)
    return results
