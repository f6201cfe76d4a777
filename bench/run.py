"""`make bench`: run every benchmark, print the table, write bench/results.json.

Options (environment variables, also as `make bench BENCH_QUICK=1`):
  BENCH_QUICK=1        fewer, shorter repeats: a smoke run, figures only indicative
  BENCH_ONLY=a,b       only these sections: ed25519, steady, cold, naive, reject, replay,
                       replay_alternatives, replay_redis, fastapi, e2e, e2e_standard, redis_wait (keys of an
                       earlier results.json that were not re-measured are kept as they were)
  BENCH_E2E=0          skip both end-to-end set-ups (they install wrk from Debian when missing)
  BENCH_E2E_SECONDS, BENCH_E2E_ROUNDS   length of each wrk run, and rounds per set-up
  BENCH_E2E_REFERENCE=1  adds a reference mode to each set-up: the replay check on a dict and a
                       heap instead of cachetools (not shipped), to measure what cachetools costs
  REDIS_URL            adds the Redis-backed replay check, side by side with the in-memory one
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import micro  # noqa: E402

E2E_SECTIONS = ("e2e", "e2e_standard")
#: What wait_replicas costs (bench/fleet.py: its own master and replica on loopback).
FLEET_SECTION = "redis_wait"
# (key, figure): (comparison, limit); issue 9's targets.
TARGETS: dict[tuple[str, str], tuple[str, float]] = {
    ("steady_Ed25519", "ratio"): ("<=", 0.75),
    ("steady_ES256", "ratio"): ("<=", 1.25),
    ("cold_Ed25519", "ratio"): ("<=", 1.25),
    ("cold_ES256", "ratio"): ("<=", 1.5),
    ("naive_Ed25519", "speedup"): (">=", 2.0),
    ("naive_ES256", "speedup"): (">=", 2.0),
    ("e2e_standard", "on_vs_floor"): (">=", 1.0),
    ("e2e_standard", "cpu_added_vs_verify"): ("<=", 0.8),
    ("e2e", "on_vs_floor"): (">=", 1.0),
}
REJECT_LIMIT = 0.1
BYTES_PER_ENTRY_LIMIT = 320


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    import cryptography
    import joserfc

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "joserfc": joserfc.__version__ if hasattr(joserfc, "__version__") else "?",
        "pynacl": _version("PyNaCl"),
        "uvicorn": _version("uvicorn"),
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "date": time.strftime("%Y-%m-%d"),
    }


def verdict(key: str, figure: str, value: float) -> str:
    if (key, figure) not in TARGETS:
        return ""
    op, limit = TARGETS[(key, figure)]
    ok = value <= limit if op == "<=" else value >= limit
    return f"{'met' if ok else 'MISSED'} ({op} {limit})"


def main() -> None:
    only_env = os.environ.get("BENCH_ONLY", "")
    wanted = {name.strip() for name in only_env.split(",") if name.strip()}
    known = set(micro.SECTIONS) | set(E2E_SECTIONS) | {FLEET_SECTION}
    if wanted - known:
        raise SystemExit(f"BENCH_ONLY: unknown sections {sorted(wanted - known)}; known: {sorted(known)}")
    sections = frozenset(wanted or known)
    if os.environ.get("BENCH_E2E", "1") == "0":
        sections -= set(E2E_SECTIONS)
    path = HERE / "results.json"
    # A partial run keeps the other figures of the last full run (and says which are new).
    results: dict[str, Any] = json.loads(path.read_text()) if wanted and path.exists() else {}
    if wanted and "machine" in results and "partial_run" not in results:
        results["previous_machine"] = results["machine"]  # where the figures not re-measured came from
    results.update(machine=machine(), quick=micro.QUICK)
    measured = micro.run_all(os.environ.get("REDIS_URL"), sections)
    setups = tuple(name for name in E2E_SECTIONS if name in sections)
    if setups:
        import e2e

        measured.update(e2e.run(setups))
    if FLEET_SECTION in sections:
        import fleet

        measured[FLEET_SECTION] = fleet.run()
    results.update(measured)
    if wanted:
        results["partial_run"] = sorted(measured)
    else:
        results.pop("partial_run", None)
        results.pop("previous_machine", None)
    print(table(results))
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {path}")


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, cryptography {m['cryptography']}, "
        f"PyNaCl {m.get('pynacl', '-')}, {m['date']}" + (" (BENCH_QUICK: indicative only)" if results.get("quick") else ""),
        "",
        "| figure | ours (us) | baseline (us) | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    if "ed25519_verify" in results:
        e = results["ed25519_verify"]
        lines.append(_row([f"Ed25519 check ({e.get('backend', '?')}) vs 1 raw cryptography verify", e["us"], e["baseline_us"],
                           f"{e['ratio']}x", ""]))
    for alg in ("Ed25519", "ES256"):
        rows = (
            (f"steady_{alg}", f"steady {alg} vs 1 raw cryptography verify", "us", "baseline_us", "ratio"),
            (f"cold_{alg}", f"cold {alg} vs 2 raw verifies", "us", "baseline_us", "ratio"),
            (f"naive_{alg}", f"naive joserfc {alg} / ours (speed-up)", "us", "naive_us", "speedup"),
        )
        for key, label, ours, base, figure in rows:
            if key in results:
                r = results[key]
                lines.append(_row([label, r[ours], r[base], f"{r[figure]}x", verdict(key, figure, r[figure])]))
        for case, figures in results.get(f"reject_{alg}", {}).items():
            ok = "met" if figures["ratio"] < REJECT_LIMIT else "MISSED"
            lines.append(_row([f"refuse {case.replace('_', ' ')} ({alg} raw verify as baseline)", figures["us"],
                               figures["baseline_us"], f"{figures['ratio']}x", f"{ok} (< {REJECT_LIMIT})"]))
    for size, figures in results.get("replay_memory", {}).items():
        ok = "met" if figures["bytes_per_entry"] <= BYTES_PER_ENTRY_LIMIT else "MISSED"
        lines.append(_row([f"memory replay cache at {int(size):,} entries", f"{figures['bytes_per_entry']} B/entry",
                           f"{figures['inserts_per_s']:,} inserts/s", "", f"{ok} (<= {BYTES_PER_ENTRY_LIMIT} B)"]))
    if "replay_redis" in results:
        r = results["replay_redis"]
        lines.append(_row(["Redis replay check vs in-memory", r["redis_us"], r["memory_us"], f"{r['ratio']}x", ""]))
    if "fastapi_dependency" in results:
        r = results["fastapi_dependency"]
        lines.append(_row([f"FastAPI request with a `Workload` dependency vs `workload_of(request)` (+{r['added_us']} us)",
                           r["dependency_us"], r["workload_of_us"], f"{r['ratio']}x", ""]))
    if "replay_alternatives" in results:
        lines += [
            "",
            "| replay cache on cachetools | bytes/entry | insert us (filling) | vs MemoryReplayCache "
            "| insert us (full, expiring) | vs MemoryReplayCache |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, r in results["replay_alternatives"].items():
            lines.append(_row([name, r["bytes_per_entry"], r["insert_us"], f"{r['insert_vs_current']}x",
                               r["steady_insert_us"], f"{r['steady_insert_vs_current']}x"]))
    for key in E2E_SECTIONS:
        if key not in results:
            continue
        e = results[key]
        lines += [
            "",
            f"| end to end `{key}`: {e.get('server', 'uvicorn plain')}, 1 worker, wrk -t1 -c16 "
            "| requests/s | p50 ms | p99 ms | server CPU us/request |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        modes = (("off", "bare app"), ("on", "middleware on"), ("naive", "naive joserfc middleware"),
                 ("floor", "bare app + 1 raw cryptography Ed25519 verify"))
        for mode, label in modes:
            f = e[mode]
            lines.append(_row([label, f"{f['rps']:.0f}", f["p50_ms"], f["p99_ms"], f.get("cpu_us", "-")]))
        lines.append("")
        if "on_vs_floor" in e:
            lines.append(
                f"on / floor = {e['on_vs_floor']}x ({verdict(key, 'on_vs_floor', e['on_vs_floor'])}); "
                f"server CPU added / the floor's verify = {e['cpu_added_us']} / {e['cpu_verify_us']} us = "
                f"{e['cpu_added_vs_verify']}x ({verdict(key, 'cpu_added_vs_verify', e['cpu_added_vs_verify']) or 'no target'}); "
                f"on / off = {e['on_vs_off']}x; on / naive = {e['on_vs_naive']}x"
            )
            if "rounds" in e:
                rounds = e["rounds"]
                lines.append(f"(medians of {len(rounds['on_vs_floor'])} rounds; each round's on / floor: "
                             f"{', '.join(map(str, rounds['on_vs_floor']))}; CPU ratio: "
                             f"{', '.join(map(str, rounds['cpu_added_vs_verify']))})")
            if "reference_dict_heap" in e:
                r = e["reference_dict_heap"]
                lines.append(f"reference, the replay check on a dict and a heap instead of cachetools (not shipped): "
                             f"on / floor = {r['on_vs_floor']}x; CPU added {r['cpu_added_us']} us, "
                             f"{r['cpu_added_vs_verify']}x the floor's verify (rounds: "
                             f"{', '.join(map(str, r['rounds_cpu_added_vs_verify']))})")
        else:
            lines.append(f"on / off = {e['on_vs_off']}x; on / naive = {e['on_vs_naive']}x; floor / off = {e['floor_vs_off']}x")
    if results.get("partial_run"):
        before = results.get("previous_machine", {})
        lines += ["", f"partial run: re-measured {', '.join(results['partial_run'])}; other figures are from an earlier run "
                  f"({before.get('cpu', '?')}, {before.get('date', '?')})"]
    if FLEET_SECTION in results:
        import fleet

        lines += ["", fleet.table(results[FLEET_SECTION])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
