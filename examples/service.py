"""An example service protected by wimse-wpt, configured the twelve-factor way.

    uvicorn --app-dir examples service:app

Every ``WIMSE_*`` variable of :mod:`wimse_wpt.settings` applies (``wimse-wpt check-config``
lists what they resolve to). The main ones:
    WIMSE_TRUST_ANCHORS   JSON file: trust domain -> JWKS (without it: the dev issuer below)
    WIMSE_DEV_ISSUER      the dev issuer's key file (default under the temp dir)
    WIMSE_ORIGINS         comma-separated trusted origins (default http://127.0.0.1:8000,http://localhost:8000)
    WIMSE_PROFILE         wpt-01 (default) or wpt-02
    WIMSE_MODE            enforce (default), report-only or optional
    WIMSE_OTH_HEADERS     comma-separated header names an oth claim may bind
    WIMSE_REPLAY_STORE    memory (default) or a Redis URL shared by every replica (redis://,
                          rediss://, unix://, redis+cluster://, redis+sentinel://)
    WIMSE_REPLAY_WAIT_REPLICAS  Redis replicas that must hold each record (WAIT; default 0)
    WIMSE_LOG_LEVEL       INFO (default) shows each refusal on the wimse_wpt logger
"""

from __future__ import annotations

import logging
import os
from typing import Any

from devenv import example_env
from fastapi import Depends, FastAPI, Request, WebSocket
from starlette.authentication import requires

from wimse_wpt.fastapi import Workload, install, require_workload, workload_of
from wimse_wpt.health import Readiness
from wimse_wpt.middleware import verified_workload
from wimse_wpt.settings import Settings

try:
    settings = Settings.from_env(example_env(os.environ))
    verifier = settings.verifier()
except ValueError as exc:
    raise SystemExit(f"wimse-wpt configuration error: {exc}") from None

# Refusals are logged at INFO on the "wimse_wpt" logger: visible by default.
logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")

app = FastAPI(title="wimse-wpt example service")
# Health checks are open, and install() keeps FastAPI's own /docs, /redoc and /openapi.json
# open; everything else needs a verified workload.
# WIMSE_MODE: enforce (default), report-only (log and count, never block) or optional.
install(app, verifier, exclude=["/healthz", "/readyz"], mode=settings.mode)
app.add_route("/readyz", Readiness(verifier))


@app.post("/path")
async def path(request: Request) -> dict[str, str]:
    """The spec's example request targets https://workload.example.com/path. workload_of()
    refuses as the Workload dependency does (see /headers), without FastAPI resolving a
    dependency on every request: on a hot route that costs more than the middleware's Python."""
    return {"workload": workload_of(request).identifier}


@app.get("/hello")
async def hello(request: Request) -> dict[str, str | None]:
    """Answers with or without a workload: under WIMSE_MODE=report-only or optional a request
    the middleware did not verify arrives here with none."""
    found = verified_workload(request.scope)
    return {"workload": found.identifier if found else None}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/whoami")
@requires("workload")
async def whoami(request: Request) -> dict[str, Any]:
    """Plain Starlette auth: request.user and @requires work without FastAPI dependencies."""
    return {"user": request.user.display_name, "scopes": request.auth.scopes}


@app.get("/headers")
async def headers(request: Request, workload: Workload) -> dict[str, Any]:
    """What the app sees of the request headers: the WIT and WPT are gone."""
    return {"headers": sorted(request.headers.keys()), "bound": sorted(workload.bound_tokens)}


@app.post("/ops", dependencies=[Depends(require_workload("wimse://example.com/ops/*"))])
async def ops(workload: Workload) -> dict[str, str]:
    return {"workload": workload.identifier}


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    workload = verified_workload(websocket.scope)
    await websocket.accept()
    await websocket.send_json({"workload": workload.identifier if workload else None})
    await websocket.close()
