"""`make demo`: start the example service, call it once rightly and several times wrongly.

Starts uvicorn on 127.0.0.1 (a free port), uses a development trust domain of its own (its
key in a fresh temporary folder), prints each call with its answer, stops the service and
removes the folder, key included.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from devenv import dev_issuer  # noqa: E402

from wimse_wpt import SigningKey, WPTAuth, mint_wpt  # noqa: E402

IDENTIFIER = "wimse://example.com/demo-client"
GREEN, RED, DIM, BOLD, RESET = ("\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m") if sys.stdout.isatty() else ("",) * 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(origin: str, service: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise SystemExit("the example service exited during start-up")
        try:
            if httpx.get(origin + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the example service did not start in time")


def show(label: str, response: httpx.Response) -> None:
    ok = response.status_code == 200
    mark = f"{GREEN}accepted{RESET}" if ok else f"{RED}rejected{RESET}"
    body = response.json()
    if ok:
        summary = f"workload {body['workload']}"
    else:
        summary = f"{body['code']}: {body['title']}"
    print(f"  {mark}  {label:<34} {response.status_code}  {summary}")
    if not ok:
        print(f"            {DIM}{response.headers['content-type']}  {response.text}{RESET}")


def main() -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="wimse-wpt-demo-"))
    try:
        run(origin, port, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the dev issuer's private key goes with it


def run(origin: str, port: int, workdir: Path) -> None:
    env = dict(os.environ, WIMSE_ORIGINS=origin, WIMSE_DEV_ISSUER=str(workdir / "issuer.json"), WIMSE_LOG_LEVEL="WARNING")
    env.pop("WIMSE_TRUST_ANCHORS", None)  # the demo's own trust domain, whatever the shell has
    issuer = dev_issuer(env)  # created before the service starts, so both share it
    service = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "service:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    try:
        wait_until_up(origin, service)
        key = SigningKey.generate("ES256")
        wit = issuer.issue_wit(IDENTIFIER, key)
        target = origin + "/path"
        print(f"\n{BOLD}wimse-wpt demo{RESET}: example service on {origin}, trust domain {issuer.trust_domain}\n")

        with httpx.Client(base_url=origin, auth=WPTAuth(key, wit)) as signed:
            show("signed call (WIT + fresh WPT)", signed.post("/path", json={"do stuff": "please"}))

        with httpx.Client(base_url=origin) as plain:
            show("no proof at all", plain.post("/path", json={}))

            headers = {"Workload-Identity-Token": wit, "Workload-Proof-Token": mint_wpt(key, wit, target)}
            plain.post("/path", headers=headers, json={})
            show("the same proof sent again", plain.post("/path", headers=headers, json={}))

            wrong = mint_wpt(key, wit, "https://another-service.example/path")
            show("proof for another audience", plain.post("/path", json={}, headers={**headers, "Workload-Proof-Token": wrong}))

            old_wit = issuer.issue_wit(IDENTIFIER, key, now=time.time() - 7200, lifetime=3600)
            stale_proof = mint_wpt(key, old_wit, target, allow_expired_wit=True)
            expired = {"Workload-Identity-Token": old_wit, "Workload-Proof-Token": stale_proof}
            show("expired WIT", plain.post("/path", json={}, headers=expired))

            stranger = SigningKey.generate("ES256")
            stolen = {"Workload-Identity-Token": wit, "Workload-Proof-Token": mint_wpt(stranger, wit, target)}
            show("stolen WIT, proof by another key", plain.post("/path", json={}, headers=stolen))
        print(f"\n  {DIM}GET /healthz is open without tokens: {httpx.get(origin + '/healthz').json()}{RESET}\n")
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


if __name__ == "__main__":
    main()
