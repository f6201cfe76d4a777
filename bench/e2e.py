"""End to end: the example endpoint under uvicorn (one worker) on 127.0.0.1, loaded by wrk
(one thread, bounded in time) with a fresh, valid proof on every request."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from wimse_wpt import DevIssuer, SigningKey, mint_wpt

HERE = Path(__file__).resolve().parent
QUICK = os.environ.get("BENCH_QUICK") == "1"
SECONDS = 3 if QUICK else 6
ROUNDS = 2 if QUICK else 3
CONNECTIONS = 16

LUA = r"""
local wit, tokens, i = nil, {}, 0
init = function(args)
  local f = assert(io.open(args[1]))
  wit = f:read("*l")
  for line in f:lines() do tokens[#tokens + 1] = line end
  f:close()
end
request = function()
  i = i + 1
  local headers = {["Workload-Identity-Token"] = wit, ["Content-Type"] = "application/json"}
  headers["Workload-Proof-Token"] = tokens[((i - 1) % #tokens) + 1]
  return wrk.format("POST", "/path", headers, "{}")
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk from Debian's packages ...", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed for the end-to-end benchmark")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(mode: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "e2e_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "error", "--no-access-log"],
        env={**os.environ, **env, "BENCH_MODE": mode, "WIMSE_LOG_LEVEL": "ERROR"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the {mode} service did not start")


def parse(output: str) -> dict[str, float]:
    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": rps, "p50_ms": latency("50"), "p99_ms": latency("99"), "non_2xx": int(errors.group(1)) if errors else 0}


def run() -> dict[str, Any]:
    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="wimse-wpt-bench-"))
    issuer = DevIssuer("example.com")
    (work / "anchors.json").write_text(json.dumps({"example.com": issuer.jwks}))
    (work / "proof.lua").write_text(LUA)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {"WIMSE_TRUST_ANCHORS": str(work / "anchors.json"), "WIMSE_ORIGINS": origin}
    key = SigningKey.generate("Ed25519")
    wit = issuer.issue_wit("wimse://example.com/bench", key)
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": [], "naive": [], "floor": []}
    for _ in range(ROUNDS):
        for mode in ("off", "on", "naive", "floor"):
            # Enough unique proofs that none repeats within one run.
            tokens = [mint_wpt(key, wit, origin + "/path", lifetime=280) for _ in range(12000 * SECONDS)]
            (work / "tokens.txt").write_text("\n".join([wit, *tokens]) + "\n")
            process = start(mode, env, port)
            try:
                output = subprocess.run(
                    [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(work / "proof.lua"),
                     origin, "--", str(work / "tokens.txt")],
                    capture_output=True, text=True, timeout=SECONDS + 60, check=True,
                ).stdout
            finally:
                process.terminate()
                process.wait(timeout=15)
            results[mode].append(parse(output))
    summary: dict[str, Any] = {}
    for mode, runs in results.items():
        summary[mode] = {
            key: round(statistics.median(r[key] for r in runs), 2) for key in ("rps", "p50_ms", "p99_ms")
        }
        summary[mode]["non_2xx"] = sum(r["non_2xx"] for r in runs)
    # Ratios per round (side by side), then the median.
    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x["rps"] / y["rps"] for x, y in zip(results[a], results[b], strict=True)), 3)

    summary["on_vs_off"] = ratio("on", "off")
    summary["floor_vs_off"] = ratio("floor", "off")
    summary["on_vs_naive"] = ratio("on", "naive")
    return summary
