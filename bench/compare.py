"""This tree's verifier against an earlier commit's, side by side in one process.

    .venv/bin/python bench/compare.py [git-ref [steady,cold,refuse,replay]]      (default: main, all)

The ref's ``src/wimse_wpt`` is exported (``git archive``) to a temporary directory as the
package ``wimse_wpt_ref`` (the package imports itself relatively, so it runs unchanged), and
both verifiers check the same kind of requests, interleaved batch by batch as ``micro.py``
does: the figures are CPU microseconds per request and the median of the per-pair ratios
new / ref (below 1: this tree is faster). On a shared, noisy machine this ratio is the
figure to read; the absolute times drift with the load. Not part of `make bench`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import micro  # noqa: E402

from wimse_wpt import MemoryReplayCache, VerificationError, Verifier  # noqa: E402


def export(ref: str) -> Any:
    """The ref's package, importable as wimse_wpt_ref."""
    archive = subprocess.run(["git", "archive", ref, "src/wimse_wpt"], cwd=HERE.parent, check=True, capture_output=True).stdout
    target = Path(tempfile.mkdtemp(prefix="wimse-wpt-ref-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (target / "src" / "wimse_wpt").rename(target / "wimse_wpt_ref")
    sys.path.insert(0, str(target))
    return importlib.import_module("wimse_wpt_ref")


def verifiers(ref: Any, scene: micro.Scene) -> tuple[Verifier, Any]:
    def make(package: Any) -> Any:
        cache = package.MemoryReplayCache(2_000_000, max_per_workload=2_000_000)
        return package.Verifier({"example.com": scene.issuer.jwks}, [micro.ORIGIN], replay_cache=cache)

    return make(sys.modules["wimse_wpt"]), make(ref)


def steady(ref: Any, alg: str) -> dict[str, float]:
    scene = micro.Scene(alg)
    new, old = verifiers(ref, scene)

    def side(verifier: Any) -> Callable[[int], Callable[[], None]]:
        return lambda _: scene.run_verifier(verifier, [micro.headers_for(scene.wit, p) for p in scene.proofs(micro.BATCH)])

    return micro.side_by_side(side(new), side(old))


def cold(ref: Any, alg: str) -> dict[str, float]:
    """A new WIT (new confirmation key) on every request; both sides check the same requests."""
    scene = micro.Scene(alg)
    new, old = verifiers(ref, scene)
    batches: dict[int, list[list[tuple[bytes, bytes]]]] = {}

    def requests(repeat: int) -> list[list[tuple[bytes, bytes]]]:
        if repeat not in batches:  # minted once per repeat, outside the timing, for both sides
            batches.clear()
            keys = [micro.SigningKey.generate(alg) for _ in range(micro.BATCH)]
            wits = [scene.issuer.issue_wit("wimse://example.com/bench", key) for key in keys]
            batches[repeat] = [micro.headers_for(w, micro.mint_wpt(k, w, micro.TARGET)) for k, w in zip(keys, wits, strict=True)]
        return batches[repeat]

    def side(verifier: Any) -> Callable[[int], Callable[[], None]]:
        return lambda repeat: scene.run_verifier(verifier, requests(repeat))

    return micro.side_by_side(side(new), side(old))


def refusals(ref: Any, alg: str) -> dict[str, dict[str, float]]:
    scene = micro.Scene(alg)
    new, old = verifiers(ref, scene)
    warm = micro.headers_for(scene.wit, scene.proofs(1)[0])
    scene.loop.run_until_complete(new.verify(warm, path="/path"))
    scene.loop.run_until_complete(old.verify(micro.headers_for(scene.wit, scene.proofs(1)[0]), path="/path"))
    cases = {
        "oversized_wit": micro.headers_for("a" * 65536, "b"),
        "malformed_wpt": micro.headers_for(scene.wit, "eyJhbGciOiJFZERTQSJ9.!!!.abc"),
        "replayed": warm,
    }
    errors = (VerificationError, ref.VerificationError)
    out = {}
    for name, headers in cases.items():
        def side(verifier: Any, headers: list[tuple[bytes, bytes]] = headers) -> Callable[[int], Callable[[], None]]:
            async def refuse_all() -> None:
                for _ in range(micro.BATCH):
                    with contextlib.suppress(*errors):
                        await verifier.verify(headers, path="/path")

            return lambda _: lambda: scene.loop.run_until_complete(refuse_all())

        out[name] = micro.side_by_side(side(new), side(old))
    return out


def replay(ref: Any) -> dict[str, float]:
    """One check-and-record of a new key, the key derivation included, in a cache of 100k."""
    import secrets

    import wimse_wpt.replay as new_replay

    workload = "wimse://example.com/bench"

    def side(package: Any, key_of: Callable[[str], bytes]) -> Callable[[int], Callable[[], None]]:
        cache = package.MemoryReplayCache(2_000_000, max_per_workload=2_000_000)

        def prepare(_: int) -> Callable[[], None]:
            jtis = [secrets.token_urlsafe(16) for _ in range(micro.BATCH * 10)]
            return lambda: [cache.check_and_record_sync(key_of(j), 300.0, workload) for j in jtis] and None  # type: ignore[func-returns-value]

        return prepare

    prefix = new_replay.replay_prefix(workload) if hasattr(new_replay, "replay_prefix") else None

    def new_key(jti: str) -> bytes:
        if prefix is None:
            return new_replay.replay_key(workload, jti)
        digest = prefix.copy()
        digest.update(jti.encode("utf-8", "surrogatepass"))
        return digest.digest()

    result = micro.side_by_side(side(sys.modules["wimse_wpt"], new_key),
                                side(ref, lambda jti: ref.replay.replay_key(workload, jti)))
    return {name: round(value / 10, 2) if name != "ratio" else value for name, value in result.items()}


def main() -> None:
    ref_name = sys.argv[1] if len(sys.argv) > 1 else "main"
    only = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else {"steady", "cold", "refuse", "replay"}
    ref = export(ref_name)
    assert MemoryReplayCache is not ref.MemoryReplayCache
    print(f"new = this tree, ref = {ref_name}; CPU us per request, median of new/ref per-pair ratios")
    for alg in ("Ed25519", "ES256") if "steady" in only else ():
        r = steady(ref, alg)
        print(f"steady {alg:8}  new {r['us']:7.1f}  ref {r['baseline_us']:7.1f}  new/ref {r['ratio']:.3f}")
    for alg in ("Ed25519", "ES256") if "cold" in only else ():
        r = cold(ref, alg)
        print(f"cold   {alg:8}  new {r['us']:7.1f}  ref {r['baseline_us']:7.1f}  new/ref {r['ratio']:.3f}")
    for alg in ("Ed25519",) if "refuse" in only else ():
        for name, r in refusals(ref, alg).items():
            print(f"refuse {name:14} new {r['us']:6.1f}  ref {r['baseline_us']:6.1f}  new/ref {r['ratio']:.3f}")
    if "replay" in only:
        r = replay(ref)
        print(f"replay key+record  new {r['us']:6.2f}  ref {r['baseline_us']:6.2f}  new/ref {r['ratio']:.3f}")


if __name__ == "__main__":
    main()
