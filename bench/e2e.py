"""End to end: the example endpoint under uvicorn (one worker) on 127.0.0.1, loaded by wrk
(one thread, bounded in time) with a fresh, valid proof on every request.

Two server set-ups: uvicorn plain (asyncio + h11, key ``e2e``) and uvicorn as
``uvicorn[standard]`` runs it (uvloop + httptools, key ``e2e_standard``). Besides wrk's
requests/s and latency, each run reads the server's own CPU time from /proc (user + system,
the server process and any children) over the measured run and divides it by the requests
served: a figure that does not depend on how fast the load generator is.
"""

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
SECONDS = int(os.environ.get("BENCH_E2E_SECONDS", 3 if QUICK else 6))
ROUNDS = int(os.environ.get("BENCH_E2E_ROUNDS", 2 if QUICK else 5))
WARM_UP_SECONDS = 1
CONNECTIONS = 16
# BENCH_E2E_REFERENCE=1 adds a reference mode: the replay check off cachetools (not shipped).
REFERENCE = os.environ.get("BENCH_E2E_REFERENCE") == "1"
MODES = ("off", "on", "naive", "floor", *(("on_dict_heap",) if REFERENCE else ()))
# name in results.json -> (uvicorn options, label)
SETUPS = {
    "e2e": (["--loop", "asyncio", "--http", "h11"], "uvicorn plain: asyncio + h11"),
    "e2e_standard": (["--loop", "uvloop", "--http", "httptools"], "uvicorn[standard]: uvloop + httptools"),
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

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


def start(mode: str, env: dict[str, str], port: int, options: list[str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "e2e_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "error", "--no-access-log", *options],
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


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, its reaped children and its live descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, ValueError, IndexError):
                continue
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in family:
                family.add(child)
                frontier.append(child)
    ticks = 0
    for member in family:
        try:
            fields = _stat(member)
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of proc(5)
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def parse(output: str) -> dict[str, float]:
    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": rps,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": requests,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def _load(wrk: str, seconds: int, script: Path, origin: str, tokens: Path) -> str:
    return subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), origin, "--", str(tokens)],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout


def measure(wrk: str, mode: str, options: list[str], env: dict[str, str], port: int, work: Path) -> dict[str, float]:
    """One server process: a short warm-up (its own proofs), then the measured run."""
    origin = env["WIMSE_ORIGINS"]
    process = start(mode, env, port, options)
    try:
        _load(wrk, WARM_UP_SECONDS, work / "proof.lua", origin, work / "warm-up.txt")
        before = server_cpu_seconds(process.pid)
        output = _load(wrk, SECONDS, work / "proof.lua", origin, work / "tokens.txt")
        after = server_cpu_seconds(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=15)
    figures = parse(output)
    figures["cpu_us"] = (after - before) / max(1, figures["requests"]) * 1e6
    return figures


def available(setup: str) -> str | None:
    """Why a set-up cannot run here (its packages are missing), or None."""
    if setup == "e2e_standard":
        import importlib.util

        missing = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name) is None]
        if missing:
            return f"{', '.join(missing)} not installed (pip install -e '.[bench]')"
    return None


def run(setups: tuple[str, ...] = tuple(SETUPS)) -> dict[str, Any]:
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
    chosen = [name for name in setups if available(name) is None]
    for name in setups:
        if name not in chosen:
            print(f"skipping {name}: {available(name)}", file=sys.stderr)
    results: dict[str, dict[str, list[dict[str, float]]]] = {name: {mode: [] for mode in MODES} for name in chosen}
    for _ in range(ROUNDS):
        # Fresh proofs each round (they live 280 s), enough that none repeats within one
        # server process; each process has its own replay cache, so processes share them.
        tokens = [mint_wpt(key, wit, origin + "/path", lifetime=280) for _ in range(12000 * (SECONDS + WARM_UP_SECONDS))]
        (work / "warm-up.txt").write_text("\n".join([wit, *tokens[: 12000 * WARM_UP_SECONDS]]) + "\n")
        (work / "tokens.txt").write_text("\n".join([wit, *tokens[12000 * WARM_UP_SECONDS :]]) + "\n")
        for name in chosen:
            for mode in MODES:
                results[name][mode].append(measure(wrk, mode, SETUPS[name][0], env, port, work))
    return {name: summarize(SETUPS[name][1], runs) for name, runs in results.items()}


def summarize(label: str, results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"server": label}
    for mode, runs in results.items():
        summary[mode] = {
            key: round(statistics.median(r[key] for r in runs), 2) for key in ("rps", "p50_ms", "p99_ms", "cpu_us")
        }
        summary[mode]["non_2xx"] = sum(int(r["non_2xx"]) for r in runs)
        if summary[mode]["non_2xx"]:  # refusals are cheaper than verifications: the figures are off
            print(f"WARNING: {label}, mode {mode}: {summary[mode]['non_2xx']} responses were not 2xx", file=sys.stderr)

    # Ratios per round (the modes of one round ran side by side), then the median.
    def ratios(a: str, b: str) -> list[float]:
        return [round(x["rps"] / y["rps"], 3) for x, y in zip(results[a], results[b], strict=True)]

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(ratios(a, b)), 3)

    summary["on_vs_off"] = ratio("on", "off")
    summary["floor_vs_off"] = ratio("floor", "off")
    summary["on_vs_naive"] = ratio("on", "naive")
    summary["on_vs_floor"] = ratio("on", "floor")
    # Server CPU a mode adds per request, over the CPU the floor's one raw verify adds.
    def cpu_vs_verify(mode: str) -> list[float]:
        return [
            (x["cpu_us"] - off["cpu_us"]) / max(1e-9, floor["cpu_us"] - off["cpu_us"])
            for x, off, floor in zip(results[mode], results["off"], results["floor"], strict=True)
        ]

    def cpu_over_off(mode: str) -> float:
        return round(statistics.median(x["cpu_us"] - o["cpu_us"] for x, o in zip(results[mode], results["off"], strict=True)), 1)

    added = cpu_vs_verify("on")
    summary["cpu_added_vs_verify"] = round(statistics.median(added), 3)
    # Each round's own figures: how far apart runs of the same hour are on this machine.
    summary["rounds"] = {"on_vs_floor": ratios("on", "floor"), "cpu_added_vs_verify": [round(a, 3) for a in added]}
    summary["cpu_added_us"] = cpu_over_off("on")
    summary["cpu_verify_us"] = cpu_over_off("floor")
    if "on_dict_heap" in results:  # the reference: what the same figures would be off cachetools
        reference = cpu_vs_verify("on_dict_heap")
        summary["reference_dict_heap"] = {
            "on_vs_floor": ratio("on_dict_heap", "floor"),
            "cpu_added_vs_verify": round(statistics.median(reference), 3),
            "cpu_added_us": cpu_over_off("on_dict_heap"),
            "rounds_cpu_added_vs_verify": [round(r, 3) for r in reference],
        }
    return summary
