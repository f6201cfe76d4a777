"""Settings shared by the example service, client and demo: environment in, Verifier out."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wimse_wpt import DevIssuer, MemoryReplayCache, RedisReplayCache, ReplayCache, TrustAnchors, Verifier

DEFAULT_ORIGINS = "http://127.0.0.1:8000,http://localhost:8000"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def dev_issuer_path(env: Mapping[str, str]) -> Path:
    default = Path(tempfile.gettempdir()) / "wimse-wpt-dev" / "issuer.json"
    return Path(env.get("WIMSE_DEV_ISSUER", default))


def dev_issuer(env: Mapping[str, str]) -> DevIssuer:
    """The development trust domain shared by the example service and client."""
    return DevIssuer.load_or_create(dev_issuer_path(env))


def trust_anchors(env: Mapping[str, str]) -> TrustAnchors:
    """Each trust domain maps to a JWKS object, a JWKS/SPIFFE bundle file (relative to the
    anchors file) or a JWKS URL (http only with WIMSE_ALLOW_INSECURE_JWKS=1), or a list."""
    path = env.get("WIMSE_TRUST_ANCHORS")
    if not path:
        issuer = dev_issuer(env)
        return TrustAnchors({issuer.trust_domain: issuer.jwks})
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"WIMSE_TRUST_ANCHORS: cannot read {path}: {exc}") from None
    if not isinstance(document, dict) or not document:
        raise SystemExit("WIMSE_TRUST_ANCHORS: expected a JSON object mapping trust domain to key sources")
    try:
        return TrustAnchors.from_config(
            document,
            base_dir=Path(path).parent,
            allow_insecure=env.get("WIMSE_ALLOW_INSECURE_JWKS") == "1",
        )
    except ValueError as exc:
        raise SystemExit(f"WIMSE_TRUST_ANCHORS: {exc}") from None


def replay_store(env: Mapping[str, str]) -> ReplayCache:
    store = env.get("WIMSE_REPLAY_STORE", "memory").strip()
    if store == "memory":
        return MemoryReplayCache()
    if store.startswith(("redis://", "rediss://", "unix://", "redis+cluster://", "redis+sentinel://")):
        try:
            return RedisReplayCache(store)
        except ValueError as exc:
            raise SystemExit(f"WIMSE_REPLAY_STORE: {exc}") from None
    raise SystemExit("WIMSE_REPLAY_STORE: expected 'memory', a redis:// URL, redis+cluster:// or redis+sentinel://")


@dataclass
class Settings:
    verifier: Verifier


def service_settings(env: Mapping[str, str]) -> Settings:
    try:
        verifier = Verifier(
            trust_anchors(env),
            _split(env.get("WIMSE_ORIGINS", DEFAULT_ORIGINS)),
            profile=env.get("WIMSE_PROFILE", "wpt-01"),  # type: ignore[arg-type]
            oth_headers=_split(env.get("WIMSE_OTH_HEADERS", "")),
            replay_cache=replay_store(env),
        )
    except ValueError as exc:
        raise SystemExit(f"wimse-wpt configuration error: {exc}") from None
    return Settings(verifier)
