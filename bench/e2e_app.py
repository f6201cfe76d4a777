"""The example endpoint in the end-to-end benchmark's modes (BENCH_MODE), ``floor`` described below:
``on`` is examples/service.py itself; ``off`` the same endpoint without the middleware;
``naive`` the middleware driven by the naive joserfc verifier; ``on_dict_heap`` (a reference,
only with BENCH_E2E_REFERENCE=1) is ``on`` with its replay check on a dict and a heap instead
of cachetools, to measure in the server what keeping the replay cache on cachetools costs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fastapi import FastAPI

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE))

MODE = os.environ.get("BENCH_MODE", "on")

if MODE in ("on", "on_dict_heap"):
    from service import app, verifier  # noqa: E402,F401

    from wimse_wpt import MemoryReplayCache  # noqa: E402

    # One benchmark workload sends thousands of proofs a second, each live 280 s: the default
    # share of one sender (a tenth of 100,000 entries) would answer most of them 429 after the
    # first seconds, and the run would time refusals. Room for every proof of the run instead.
    verifier.replay_cache = MemoryReplayCache(2_000_000, max_per_workload=2_000_000)
    if MODE == "on_dict_heap":  # reference only, never shipped: the design keeps cachetools
        import time

        from micro import _dict_heap_reference  # noqa: E402

        check = _dict_heap_reference(2_000_000, time.time)
        verifier._record_sync = lambda key, ttl, _workload: check(key, ttl)
elif MODE == "off":
    app = FastAPI()

    @app.post("/path")
    async def path() -> dict[str, str | None]:
        return {"workload": None}

elif MODE == "naive":
    from naive import NaiveVerifier  # noqa: E402

    from wimse_wpt.fastapi import Workload, install  # noqa: E402

    anchors = json.loads(Path(os.environ["WIMSE_TRUST_ANCHORS"]).read_text())
    app = FastAPI()
    install(app, NaiveVerifier(anchors, os.environ["WIMSE_ORIGINS"].split(",")), exclude=["/healthz"])

    @app.post("/path")
    async def naive_path(workload: Workload) -> dict[str, str]:
        return {"workload": workload.identifier}

elif MODE == "floor":
    # The reference: the bare endpoint behind a middleware doing exactly one raw Ed25519
    # verify of the request's WPT signature (inputs decoded as cheaply as possible).
    import base64

    from wimse_wpt.tokens import b64url_decode  # noqa: E402

    anchors = json.loads(Path(os.environ["WIMSE_TRUST_ANCHORS"]).read_text())
    public_key = None

    bare = FastAPI()

    @bare.post("/path")
    async def floor_path() -> dict[str, str | None]:
        return {"workload": None}

    @bare.get("/healthz")
    async def floor_health() -> dict[str, str]:
        return {"status": "ok"}

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402

    async def app(scope, receive, send):  # type: ignore[no-redef]
        global public_key
        if scope["type"] == "http" and scope["path"] == "/path":
            headers = dict(scope["headers"])
            if public_key is None:
                wit = headers[b"workload-identity-token"].split(b".")[1]
                claims = json.loads(base64.urlsafe_b64decode(wit + b"=" * (-len(wit) % 4)))
                public_key = Ed25519PublicKey.from_public_bytes(b64url_decode(claims["cnf"]["jwk"]["x"].encode()))
            signing_input, _, signature = headers[b"workload-proof-token"].rpartition(b".")
            public_key.verify(b64url_decode(signature), signing_input)
        await bare(scope, receive, send)

else:
    raise SystemExit(f"BENCH_MODE must be on, off, naive, floor or on_dict_heap, not {MODE!r}")


if MODE != "floor":

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}
