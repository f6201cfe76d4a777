"""An example service protected by wimse-wpt, configured the twelve-factor way.

    uvicorn --app-dir examples service:app

Environment:
    WIMSE_TRUST_ANCHORS   JSON file: trust domain -> JWKS (without it: the dev issuer below)
    WIMSE_ORIGINS         comma-separated trusted origins (default http://127.0.0.1:8000,http://localhost:8000)
    WIMSE_PROFILE         wpt-01 (default) or wpt-02
    WIMSE_OTH_HEADERS     comma-separated header names an oth claim may bind
    WIMSE_REPLAY_STORE    memory (default) or a redis:// URL shared by every replica
    WIMSE_DEV_ISSUER      where the dev issuer's key lives when no trust anchors are given
"""

from __future__ import annotations

import logging
import os
from typing import Any

from devenv import service_settings
from fastapi import Depends, FastAPI, Request, WebSocket
from starlette.authentication import requires

from wimse_wpt.fastapi import Workload, install, require_workload
from wimse_wpt.middleware import verified_workload

logging.basicConfig(level=os.environ.get("WIMSE_LOG_LEVEL", "INFO"), format="%(levelname)s %(name)s: %(message)s")

settings = service_settings(os.environ)
app = FastAPI(title="wimse-wpt example service")
# Health checks and the API docs are open; everything else needs a verified workload.
install(app, settings.verifier, exclude=["/healthz", "/openapi.json", "/docs", "/docs/*"])


@app.post("/path")
async def path(workload: Workload) -> dict[str, str]:
    """The spec's example request targets https://workload.example.com/path."""
    return {"workload": workload.identifier}


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
