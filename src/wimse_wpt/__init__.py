"""wimse-wpt: demand proof that each caller is the workload it claims to be.

Server side: :class:`Verifier` (framework-free) and :class:`WPTMiddleware` (ASGI).
Client side: :class:`WPTAuth` (httpx) and :class:`SigningKey`. Testing: :class:`DevIssuer`.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from .anchors import JWKSFile, KeySet, KeySource, KeysUnavailable, RemoteJWKS, StaticKeys, TrustAnchors
from .client import SigningKey, WPTAuth, mint_wpt, target_uri
from .coexistence import BearerCoexistence, BearerUser
from .devissuer import DevIssuer
from .health import Readiness
from .identifiers import IdentifierPattern, WorkloadIdentifier, parse_identifier
from .middleware import RouteRule, WorkloadUser, WPTMiddleware, verified_workload
from .observability import OpenTelemetryObserver, PrometheusObserver, VerificationEvent
from .paths import PathPolicy
from .problems import CATALOG, Problem, Profile, VerificationError
from .replay import (
    MemoryReplayCache,
    RedisReplayCache,
    ReplayCache,
    ReplayCacheFull,
    ReplayQuotaExceeded,
    ReplayStoreUnavailable,
    ReplayStoreUnsafe,
)
from .tokens import token_hash
from .verifier import VerifiedWorkload, Verifier

try:
    __version__ = _distribution_version("wimse-wpt")  # one source of truth: pyproject.toml, via the installed metadata
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "BearerCoexistence",
    "BearerUser",
    "OpenTelemetryObserver",
    "PathPolicy",
    "PrometheusObserver",
    "Readiness",
    "ReplayQuotaExceeded",
    "ReplayStoreUnsafe",
    "VerificationEvent",
    "CATALOG",
    "DevIssuer",
    "IdentifierPattern",
    "JWKSFile",
    "KeySet",
    "KeySource",
    "KeysUnavailable",
    "MemoryReplayCache",
    "Problem",
    "Profile",
    "RedisReplayCache",
    "RemoteJWKS",
    "ReplayCache",
    "ReplayCacheFull",
    "ReplayStoreUnavailable",
    "RouteRule",
    "SigningKey",
    "StaticKeys",
    "TrustAnchors",
    "VerificationError",
    "VerifiedWorkload",
    "Verifier",
    "WPTAuth",
    "WPTMiddleware",
    "WorkloadUser",
    "WorkloadIdentifier",
    "mint_wpt",
    "parse_identifier",
    "target_uri",
    "verified_workload",
    "token_hash",
]
