"""Real servers for tests: uvicorn on 127.0.0.1, in a thread or as a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: Any, port: int | None = None, **config: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 in a thread; yield its origin."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def example_service(env: Mapping[str, str], workers: int = 1, port: int | None = None) -> Iterator[str]:
    """The example service as an operator starts it: ``uvicorn --app-dir examples service:app``."""
    port = port or free_port()
    origin = f"http://127.0.0.1:{port}"
    full_env = {**os.environ, "WIMSE_ORIGINS": origin, "WIMSE_LOG_LEVEL": "WARNING", **env}
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "service:app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if workers > 1:
        command += ["--workers", str(workers)]
    with running(command, full_env, origin, "the example service", startup=30):
        yield origin


@contextlib.contextmanager
def running(command: list[str], env: Mapping[str, str], origin: str, name: str, startup: float = 60) -> Iterator[None]:
    """Run ``command`` until ``origin``/healthz answers 200; stop it (and wait) whatever happens."""
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + startup
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
            try:
                if httpx.get(origin + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
