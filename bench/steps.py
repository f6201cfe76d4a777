"""The steady path step by step: what one verification costs, and where it goes.

    .venv/bin/python bench/steps.py [Ed25519|ES256]

In-process (no server): a verifier with a cached WIT checks fresh proofs in a loop, as the
steady benchmark does. Prints the CPU time of one verification and of one raw cryptography
verify (thread CPU time, so a busy machine inflates less), then, when py-spy is available,
samples the loop and splits the verification's CPU by the functions it calls (shares of the
samples under ``Verifier.verify`` times its measured cost). Not part of `make bench`.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import micro  # noqa: E402

SECONDS = int(os.environ.get("BENCH_PROFILE_SECONDS", "10"))
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def cpu_us(run: object, count: int) -> float:
    start = time.thread_time()
    run()  # type: ignore[operator]
    return (time.thread_time() - start) / count * 1e6


def loop(alg: str, seconds: float) -> None:
    """The steady loop alone (the process py-spy samples)."""
    scene = micro.Scene(alg)
    verifier = scene.verifier()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = [micro.headers_for(scene.wit, p) for p in scene.proofs(200)]
        scene.run_verifier(verifier, batch)()


def measure(alg: str) -> dict[str, float]:
    scene = micro.Scene(alg)
    verifier = scene.verifier()
    check, prepare = micro.raw_verifier(scene.key)
    ours, raw = [], []
    for _ in range(7):
        batch = [micro.headers_for(scene.wit, p) for p in scene.proofs(300)]
        ours.append(cpu_us(scene.run_verifier(verifier, batch), 300))
        pairs = [prepare(p) for p in scene.proofs(300)]
        raw.append(cpu_us(lambda pairs=pairs: [check(pair) for pair in pairs], 300))  # type: ignore[misc]
    ours.sort()
    raw.sort()
    return {"verify_us": round(ours[3], 1), "raw_verify_us": round(raw[3], 1)}


def breakdown(alg: str, verify_us: float) -> None:
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        print("(py-spy not installed: no breakdown)")
        return
    out = Path(tempfile.gettempdir()) / f"wimse-wpt-steps-{alg}.txt"
    subprocess.run(
        [str(spy), "record", "--rate", "500", "--format", "raw", "--function", "--output", str(out), "--",
         sys.executable, __file__, "--loop", alg, str(SECONDS)],
        check=True, capture_output=True,
    )
    under: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        names = []
        for raw in stack.split(";"):
            match = FRAME.match(raw)
            names.append(f"{Path(match['file']).name}:{match['function']}" if match else raw)
        for i, name in enumerate(names):
            if name.endswith("Verifier.verify"):
                count = int(count_text)
                total += count
                below = names[i + 1 : i + 3] or ["(Verifier.verify itself)"]
                under[" > ".join(below)] += count
                break
    print(f"\nVerifier.verify: {total} samples = {verify_us} us; by callee (two levels), share and us:")
    for name, count in under.most_common(25):
        print(f"  {100 * count / total:5.1f} %  {verify_us * count / total:6.1f} us  {name}")


def main() -> None:
    if sys.argv[1:2] == ["--loop"]:
        loop(sys.argv[2], float(sys.argv[3]))
        return
    alg = sys.argv[1] if len(sys.argv) > 1 else "Ed25519"
    figures = measure(alg)
    print(f"{alg}: one steady verification {figures['verify_us']} us CPU, one raw cryptography verify "
          f"{figures['raw_verify_us']} us CPU, ratio {figures['verify_us'] / figures['raw_verify_us']:.3f}")
    breakdown(alg, figures["verify_us"])


if __name__ == "__main__":
    main()
