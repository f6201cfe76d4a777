"""`make bench`: run every benchmark, print the table, write bench/results.json.

BENCH_QUICK=1 runs fewer, shorter repeats (for a smoke run). REDIS_URL adds the
Redis-backed replay check, measured side by side with the in-memory one. BENCH_E2E=0 skips
the end-to-end runs (they install wrk from Debian's packages when it is missing).
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

TARGETS = {
    "steady_Ed25519": ("ratio", "<=", 1.25),
    "steady_ES256": ("ratio", "<=", 1.35),
    "cold_Ed25519": ("ratio", "<=", 1.25),
    "cold_ES256": ("ratio", "<=", 1.25),
    "naive_Ed25519": ("speedup", ">=", 2.0),
    "naive_ES256": ("speedup", ">=", 2.0),
}


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
        "date": time.strftime("%Y-%m-%d"),
    }


def verdict(name: str, figures: dict[str, Any]) -> str:
    if name not in TARGETS:
        return ""
    key, op, limit = TARGETS[name]
    value = figures[key]
    ok = value <= limit if op == "<=" else value >= limit
    return f"{'met' if ok else 'MISSED'} ({op} {limit})"


def main() -> None:
    results: dict[str, Any] = {"machine": machine(), "quick": micro.QUICK}
    results.update(micro.run_all(os.environ.get("REDIS_URL")))
    if os.environ.get("BENCH_E2E", "1") != "0":
        import e2e

        results["e2e"] = e2e.run()
    print(table(results))
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {HERE / 'results.json'}")


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, cryptography {m['cryptography']}, {m['date']}",
        "",
        "| figure | ours (us) | baseline (us) | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for alg in ("Ed25519", "ES256"):
        s, c, n = results[f"steady_{alg}"], results[f"cold_{alg}"], results[f"naive_{alg}"]
        lines.append(f"| steady {alg} vs 1 raw verify | {s['us']} | {s['baseline_us']} | {s['ratio']}x | {verdict(f'steady_{alg}', s)} |")
        lines.append(f"| cold {alg} vs 2 raw verifies | {c['us']} | {c['baseline_us']} | {c['ratio']}x | {verdict(f'cold_{alg}', c)} |")
        lines.append(f"| naive joserfc {alg} / ours (speed-up) | {n['us']} | {n['naive_us']} | {n['speedup']}x | {verdict(f'naive_{alg}', n)} |")
        for case, figures in results[f"reject_{alg}"].items():
            ok = "met" if figures["ratio"] < 0.1 else "MISSED"
            lines.append(f"| refuse {case.replace('_', ' ')} ({alg} raw verify as baseline) | {figures['us']} | {figures['baseline_us']} | {figures['ratio']}x | {ok} (< 0.1) |")
    for size, figures in results["replay_memory"].items():
        ok = "met" if figures["bytes_per_entry"] <= 320 else "MISSED"
        lines.append(f"| memory replay cache at {int(size):,} entries | {figures['bytes_per_entry']} B/entry | {figures['inserts_per_s']:,} inserts/s | | {ok} (<= 320 B) |")
    if "replay_redis" in results:
        r = results["replay_redis"]
        lines.append(f"| Redis replay check vs in-memory | {r['redis_us']} | {r['memory_us']} | {r['ratio']}x | |")
    if "e2e" in results:
        e = results["e2e"]
        lines += [
            "",
            "| end to end (uvicorn, 1 worker, wrk -t1 -c16) | requests/s | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        for mode, label in (("off", "bare app"), ("on", "middleware on"), ("naive", "naive joserfc middleware"), ("floor", "bare app + 1 raw Ed25519 verify")):
            f = e[mode]
            lines.append(f"| {label} | {f['rps']:.0f} | {f['p50_ms']} | {f['p99_ms']} |")
        on_ok = "met" if e["on_vs_off"] >= 0.6 else "MISSED"
        naive_ok = "met" if e["on_vs_naive"] >= 1.3 else "MISSED"
        lines += [
            "",
            f"on / off = {e['on_vs_off']}x ({on_ok}, target >= 0.6); on / naive = {e['on_vs_naive']}x ({naive_ok}, target >= 1.3); "
            f"1 raw verify / off = {e['floor_vs_off']}x (the floor, same run)",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
