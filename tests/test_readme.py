"""The README's quick start, copied out of the README and run against a real server."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .servers import ROOT, free_port


def quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def quick_start_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", quick_start(), re.S)


def test_readme_quick_start_runs_as_two_processes(tmp_path: Path) -> None:
    """As a reader would: app.py and client.py saved from the README, the server started with
    the README's command, the client run in a second process; they share the issuer file."""
    server_block, client_block = quick_start_blocks()
    [command] = re.findall(r"^    (uvicorn app:app .*)$", quick_start(), re.M)
    port = str(free_port())
    (tmp_path / "app.py").write_text(server_block.replace("8000", port))
    (tmp_path / "client.py").write_text(client_block.replace("8000", port))
    argv = [sys.executable, "-m", *shlex.split(command.replace("8000", port))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIMSE_")}
    server = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # the README's health route, open without tokens
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                health = httpx.get(origin + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the Quick start server did not start"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        client = subprocess.run(
            [sys.executable, "client.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        unsigned = httpx.get(origin + "/hello")
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert client.returncode == 0, client.stderr
    assert client.stdout.strip() == "{'hello': 'wimse://example.com/my-client'}"
    assert unsigned.status_code == 400 and unsigned.json()["code"] == "wit-missing"
    assert (tmp_path / "issuer.json").stat().st_mode & 0o077 == 0  # the shared key file is private


def test_readme_documents_every_problem_code_with_its_status() -> None:
    from wimse_wpt.problems import CATALOG, Kind

    text = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| ([0-9/]+) \|", text, re.M))
    expected = {
        Kind.CREDENTIAL: "400/401",
        Kind.FORBIDDEN: "403",
        Kind.UNAVAILABLE: "503",
        Kind.REQUEST: "400",
        Kind.LIMITED: "429",
        Kind.INTERNAL: "500",
    }
    assert rows == {code: expected[kind] for code, (kind, _title) in CATALOG.items()}


def test_readme_documents_every_public_name() -> None:
    import wimse_wpt

    text = (ROOT / "README.md").read_text()
    assert [name for name in wimse_wpt.__all__ if f"`{name}" not in text] == []
