"""Where the server's time goes: py-spy on the uvicorn worker while wrk loads it.

    .venv/bin/python bench/profile.py [mode] [setup]     (default: on e2e_standard)

Starts the end-to-end service (bench/e2e_app.py, the same as `make bench`), warms it up,
then samples it with py-spy (pip install py-spy; needs ptrace, i.e. root or
CAP_SYS_PTRACE) for the length of one wrk run. Prints the functions with the largest share of
the samples, by own time and by inclusive time, and keeps the collapsed stacks (for a flame
graph) in the temporary directory. Not part of `make bench`.

On a busy machine the shares are of wall-clock samples of a running thread: time spent
waiting for a core counts against whatever frame was running (the send to the socket, often).
The CPU figures of `make bench` are the reliable ones; this says where to look.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import e2e  # noqa: E402

from wimse_wpt import DevIssuer, SigningKey, mint_wpt  # noqa: E402

SECONDS = int(os.environ.get("BENCH_PROFILE_SECONDS", "12"))
RATE = int(os.environ.get("BENCH_PROFILE_RATE", "250"))
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is needed: pip install py-spy")
    return found


def record(mode: str, setup: str, output: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="wimse-wpt-profile-"))
    issuer = DevIssuer("example.com")
    (work / "anchors.json").write_text(json.dumps({"example.com": issuer.jwks}))
    (work / "proof.lua").write_text(e2e.LUA)
    port = e2e.free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {"WIMSE_TRUST_ANCHORS": str(work / "anchors.json"), "WIMSE_ORIGINS": origin}
    key = SigningKey.generate("Ed25519")
    wit = issuer.issue_wit("wimse://example.com/bench", key)
    tokens = [mint_wpt(key, wit, origin + "/path", lifetime=280) for _ in range(8000 * (SECONDS + 3))]
    (work / "warm-up.txt").write_text("\n".join([wit, *tokens[:8000]]) + "\n")
    (work / "tokens.txt").write_text("\n".join([wit, *tokens[8000:]]) + "\n")
    wrk = e2e.ensure_wrk()
    process = e2e.start(mode, env, port, e2e.SETUPS[setup][0])
    try:
        e2e._load(wrk, 1, work / "proof.lua", origin, work / "warm-up.txt")
        load = subprocess.Popen(
            [wrk, "-t1", f"-c{e2e.CONNECTIONS}", f"-d{SECONDS + 2}s", "--latency", "-s", str(work / "proof.lua"),
             origin, "--", str(work / "tokens.txt")],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(1)
        subprocess.run(
            [py_spy(), "record", "--pid", str(process.pid), "--rate", str(RATE), "--duration", str(SECONDS),
             "--format", "raw", "--function", "--nonblocking", "--output", str(output)],
            check=True, capture_output=True,
        )
        out, _ = load.communicate(timeout=SECONDS + 60)
        figures = e2e.parse(out)
        print(f"under profile: {figures['rps']:.0f} requests/s, {figures['non_2xx']} non-2xx")
    finally:
        process.terminate()
        process.wait(timeout=15)


def group(function: str, file: str) -> str:
    """A coarse owner for a frame, to add shares up."""
    if "wimse_wpt" in file:
        return f"wimse_wpt/{Path(file).name}:{function}"
    return f"{file.split('/')[0] if '/' in file else file}:{function}"


def report(collapsed: Path, top: int = 30) -> dict[str, list[tuple[str, float]]]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = []
        for raw in stack.split(";"):
            match = FRAME.match(raw)
            frames.append(group(match["function"], match["file"]) if match else raw)
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    result = {
        "own": [(name, round(100 * n / total, 1)) for name, n in own.most_common(top)],
        "inclusive": [(name, round(100 * n / total, 1)) for name, n in inclusive.most_common(top)],
    }
    print(f"\n{total} samples (GIL-holding or running; idle excluded)")
    for kind in ("own", "inclusive"):
        print(f"\n{kind} time, share of samples:")
        for name, share in result[kind]:
            print(f"  {share:5.1f} %  {name}")
    return result


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "on"
    setup = sys.argv[2] if len(sys.argv) > 2 else "e2e_standard"
    output = Path(tempfile.gettempdir()) / f"wimse-wpt-profile-{setup}-{mode}.txt"
    record(mode, setup, output)
    report(output)
    print(f"\ncollapsed stacks: {output}")


if __name__ == "__main__":
    main()
