"""Settings from the environment: every knob a service needs, under one prefix, ``WIMSE_``.

``Settings.from_env()`` reads and checks every variable once; a bad value raises
``ValueError`` naming the variable. Nothing is connected or fetched while reading:
``trust_anchors()``, ``replay_cache()`` and ``verifier()`` build the parts when asked.

Trust anchors are required: ``WIMSE_TRUST_ANCHORS`` (a JSON file or inline JSON), or, for
development only, ``WIMSE_DEV_ISSUER`` (the key file of a :class:`~wimse_wpt.DevIssuer`,
created when absent). A service with neither refuses to start rather than trust nothing
or something by accident.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from .anchors import TrustAnchors
from .devissuer import DevIssuer
from .problems import PROFILES, Profile
from .replay import MAX_TTL, MIN_TTL, MemoryReplayCache, RedisReplayCache, ReplayCache
from .verifier import Verifier, _parse_origin

PREFIX: Final = "WIMSE_"

#: ``enforce`` refuses what fails; ``report-only`` verifies and records but never blocks;
#: ``optional`` lets a request without any WIMSE header through unauthenticated.
Mode = Literal["enforce", "report-only", "optional"]
MODES: tuple[Mode, ...] = get_args(Mode)

DEFAULT_ORIGINS: Final = ("http://127.0.0.1:8000", "http://localhost:8000")
#: The URL forms a Redis replay store takes (wimse_wpt.redis_connect reads them).
REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://", "redis+cluster://", "redis+sentinel://")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

#: Every variable read, with a one-line meaning (``wimse-wpt check-config`` prints them).
VARIABLES: Final[Mapping[str, str]] = {
    "WIMSE_TRUST_ANCHORS": "JSON file (or inline JSON object): trust domain -> JWKS object, JWKS/SPIFFE file or JWKS URL",
    "WIMSE_DEV_ISSUER": "development only: key file of a DevIssuer trusted when WIMSE_TRUST_ANCHORS is unset",
    "WIMSE_ALLOW_INSECURE_JWKS": "1 allows http:// JWKS URLs to loopback hosts (local testing)",
    "WIMSE_ORIGINS": "comma-separated origins this service is reached at",
    "WIMSE_AUDIENCES": "comma-separated extra aud values accepted (absolute URIs)",
    "WIMSE_PROFILE": "wpt-01 (default) or wpt-02",
    "WIMSE_MODE": "enforce (default), report-only or optional",
    "WIMSE_OTH_HEADERS": "comma-separated header names an oth claim may bind",
    "WIMSE_REPLAY_STORE": "memory (default) or a Redis URL shared by every replica: redis://, rediss://, "
    "unix://, redis+cluster:// or redis+sentinel://",
    "WIMSE_REPLAY_WAIT_REPLICAS": "Redis replicas that must hold each record before a proof is accepted (WAIT; default 0)",
    "WIMSE_LEEWAY": "seconds of clock skew tolerated on exp (0-300, default 0)",
    "WIMSE_MAX_WPT_LIFETIME": "seconds; a WPT expiring later is refused (default 300)",
    "WIMSE_MAX_WIT_LIFETIME": "seconds; a WIT expiring later is refused (default 86400)",
    "WIMSE_JWKS_MIN_REFRESH": "seconds between two fetches of a remote JWKS, at least (default 30)",
    "WIMSE_JWKS_DEFAULT_REFRESH": "seconds between refreshes without Cache-Control max-age (default 300)",
    "WIMSE_JWKS_MAX_REFRESH": "seconds between refreshes, at most (default 3600)",
    "WIMSE_JWKS_MAX_STALE": "seconds the last good remote keys serve while the endpoint fails (default 86400)",
    "WIMSE_JWKS_TIMEOUT": "seconds one JWKS fetch may take (default 5)",
    "WIMSE_JWKS_UNKNOWN_KID_REFRESH": "seconds between two fetches that unknown kids ask for (default 5, at most the min)",
    "WIMSE_LOG_LEVEL": "level of the wimse_wpt logger (default INFO: refusals are logged at INFO)",
}


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float, *, low_open: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw[:40]!r} is not a number of seconds") from None
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value > high:
        bound = "more than" if low_open else "at least"
        raise ValueError(f"{name}: must be {bound} {low:g} and at most {high:g} seconds, got {raw[:40]!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) > high:
        raise ValueError(f"{name}: must be a whole number from 0 to {high}, got {raw[:40]!r}")
    return int(raw)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {raw[:40]!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip() or default
    if raw not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}, got {raw[:40]!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """What a service runs with. Build it with :meth:`from_env`, or directly in code."""

    trust_anchors_source: str | None = None  # WIMSE_TRUST_ANCHORS: a file path or inline JSON
    dev_issuer_path: Path | None = None  # WIMSE_DEV_ISSUER
    allow_insecure_jwks: bool = False
    origins: tuple[str, ...] = DEFAULT_ORIGINS
    audiences: tuple[str, ...] = ()
    profile: Profile = "wpt-01"
    mode: Mode = "enforce"
    oth_headers: tuple[str, ...] = ()
    replay_store: str = "memory"
    replay_wait_replicas: int = 0
    leeway: float = 0.0
    max_wpt_lifetime: float = 300.0
    max_wit_lifetime: float = 86400.0
    jwks_min_refresh: float = 30.0
    jwks_default_refresh: float = 300.0
    jwks_max_refresh: float = 3600.0
    jwks_max_stale: float = 86400.0
    jwks_timeout: float = 5.0
    jwks_unknown_kid_refresh: float = 5.0
    log_level: str = "INFO"
    #: Unknown ``WIMSE_*`` variables seen (a typo is worth a warning, not a crash).
    unknown: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every ``WIMSE_*`` variable; ``ValueError`` names the first bad one."""
        env = os.environ if env is None else env
        anchors = env.get("WIMSE_TRUST_ANCHORS", "").strip() or None
        dev = env.get("WIMSE_DEV_ISSUER", "").strip()
        if anchors is None and not dev:
            raise ValueError(
                "WIMSE_TRUST_ANCHORS: not set. Give a JSON file mapping each trust domain to its keys "
                "(or WIMSE_DEV_ISSUER, a development issuer's key file, for local testing)"
            )
        origins = _split(env.get("WIMSE_ORIGINS", "")) or DEFAULT_ORIGINS
        for origin in origins:
            try:
                _parse_origin(origin)
            except ValueError as exc:
                raise ValueError(f"WIMSE_ORIGINS: {exc}") from None
        audiences = _split(env.get("WIMSE_AUDIENCES", ""))
        try:
            Verifier.check_audiences(audiences)
        except ValueError as exc:
            raise ValueError(f"WIMSE_AUDIENCES: {exc}") from None
        oth = _split(env.get("WIMSE_OTH_HEADERS", ""))
        try:
            Verifier._check_oth_names(oth)
        except ValueError as exc:
            raise ValueError(f"WIMSE_OTH_HEADERS: {exc}") from None
        store = env.get("WIMSE_REPLAY_STORE", "").strip() or "memory"
        if store != "memory" and not store.startswith(REDIS_SCHEMES):
            raise ValueError(
                "WIMSE_REPLAY_STORE: expected 'memory' or a redis://, rediss://, unix://, "
                "redis+cluster://host:port[,host:port...] or redis+sentinel://host:port[,...]/service-name URL"
            )
        wait_replicas = _count(env, "WIMSE_REPLAY_WAIT_REPLICAS", 0, 16)
        if wait_replicas and store == "memory":
            raise ValueError("WIMSE_REPLAY_WAIT_REPLICAS: needs a Redis WIMSE_REPLAY_STORE (memory has no replicas)")
        minimum = _number(env, "WIMSE_JWKS_MIN_REFRESH", 30.0, 0, 86400)
        default = _number(env, "WIMSE_JWKS_DEFAULT_REFRESH", 300.0, 0, 86400)
        maximum = _number(env, "WIMSE_JWKS_MAX_REFRESH", 3600.0, 0, 7 * 86400)
        if not minimum <= default <= maximum:
            raise ValueError(
                "WIMSE_JWKS_MIN_REFRESH, WIMSE_JWKS_DEFAULT_REFRESH, WIMSE_JWKS_MAX_REFRESH: "
                f"must satisfy min <= default <= max, got {minimum:g}, {default:g}, {maximum:g}"
            )
        log_level = (env.get("WIMSE_LOG_LEVEL", "").strip() or "INFO").upper()
        if log_level not in _LOG_LEVELS:
            raise ValueError(f"WIMSE_LOG_LEVEL: must be one of {', '.join(_LOG_LEVELS)}")
        return cls(
            trust_anchors_source=anchors,
            dev_issuer_path=Path(dev) if dev else None,
            allow_insecure_jwks=_flag(env, "WIMSE_ALLOW_INSECURE_JWKS"),
            origins=origins,
            audiences=audiences,
            profile=_choice(env, "WIMSE_PROFILE", PROFILES, "wpt-01"),  # type: ignore[arg-type]
            mode=_choice(env, "WIMSE_MODE", MODES, "enforce"),  # type: ignore[arg-type]
            oth_headers=oth,
            replay_store=store,
            replay_wait_replicas=wait_replicas,
            leeway=_number(env, "WIMSE_LEEWAY", 0.0, 0, 300),
            max_wpt_lifetime=_number(env, "WIMSE_MAX_WPT_LIFETIME", 300.0, 0, 3600, low_open=True),
            max_wit_lifetime=_number(env, "WIMSE_MAX_WIT_LIFETIME", 86400.0, 0, 30 * 86400, low_open=True),
            jwks_min_refresh=minimum,
            jwks_default_refresh=default,
            jwks_max_refresh=maximum,
            jwks_max_stale=_number(env, "WIMSE_JWKS_MAX_STALE", 86400.0, 0, 30 * 86400, low_open=True),
            jwks_timeout=_number(env, "WIMSE_JWKS_TIMEOUT", 5.0, 0, 60, low_open=True),
            jwks_unknown_kid_refresh=_number(env, "WIMSE_JWKS_UNKNOWN_KID_REFRESH", 5.0, 0, 86400),
            log_level=log_level,
            unknown=tuple(sorted(k for k in env if k.startswith(PREFIX) and k not in VARIABLES)),
        )

    # --- the parts ------------------------------------------------------------------------

    def anchors_config(self) -> tuple[dict[str, Any], Path]:
        """The WIMSE_TRUST_ANCHORS document and the folder its relative file paths start from."""
        source = self.trust_anchors_source
        if source is None:
            raise ValueError("WIMSE_TRUST_ANCHORS: not set")
        if source.startswith("{"):
            text, base = source, Path.cwd()
        else:
            try:
                text, base = Path(source).read_text(), Path(source).parent
            except OSError as exc:
                raise ValueError(f"WIMSE_TRUST_ANCHORS: cannot read {source}: {exc.strerror or exc}") from None
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"WIMSE_TRUST_ANCHORS: not JSON: {exc}") from None
        if not isinstance(document, dict) or not document:
            raise ValueError("WIMSE_TRUST_ANCHORS: expected a JSON object mapping trust domain to key sources")
        return document, base

    def dev_issuer(self) -> DevIssuer:
        """The development issuer of WIMSE_DEV_ISSUER (created there when absent)."""
        if self.dev_issuer_path is None:
            raise ValueError("WIMSE_DEV_ISSUER: not set")
        try:
            return DevIssuer.load_or_create(self.dev_issuer_path)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"WIMSE_DEV_ISSUER: cannot use {self.dev_issuer_path}: {exc}") from None

    def trust_anchors(self) -> TrustAnchors:
        """The configured anchors; remote JWKS are fetched when first needed, not here."""
        if self.trust_anchors_source is None:
            issuer = self.dev_issuer()
            logging.getLogger("wimse_wpt").warning(
                "trusting the development issuer %s for %s (WIMSE_TRUST_ANCHORS unset): not for production",
                self.dev_issuer_path,
                issuer.trust_domain,
            )
            return TrustAnchors({issuer.trust_domain: issuer.jwks})
        document, base = self.anchors_config()
        try:
            return TrustAnchors.from_config(
                document,
                base_dir=base,
                allow_insecure=self.allow_insecure_jwks,
                min_refresh=self.jwks_min_refresh,
                default_refresh=self.jwks_default_refresh,
                max_refresh=self.jwks_max_refresh,
                max_stale=self.jwks_max_stale,
                timeout=self.jwks_timeout,
                unknown_kid_refresh=self.jwks_unknown_kid_refresh,
            )
        except ValueError as exc:
            raise ValueError(f"WIMSE_TRUST_ANCHORS: {exc}") from None

    def replay_cache(self) -> ReplayCache:
        if self.replay_store == "memory":
            return MemoryReplayCache()
        # The loss window must cover the longest entry the verifier records.
        max_ttl = min(max(self.max_wpt_lifetime + self.leeway, MIN_TTL), MAX_TTL)
        try:
            return RedisReplayCache(self.replay_store, max_ttl=max_ttl, wait_replicas=self.replay_wait_replicas)
        except ValueError as exc:  # a malformed URL names the form it expected
            raise ValueError(f"WIMSE_REPLAY_STORE: {exc}") from None

    def verifier(self, **overrides: Any) -> Verifier:
        """A :class:`Verifier` with these settings; keyword arguments override any of them."""
        options: dict[str, Any] = {
            "profile": self.profile,
            "audiences": self.audiences,
            "oth_headers": self.oth_headers,
            "leeway": self.leeway,
            "max_wpt_lifetime": self.max_wpt_lifetime,
            "max_wit_lifetime": self.max_wit_lifetime,
        }
        options.update(overrides)
        if "replay_cache" not in options:
            options["replay_cache"] = self.replay_cache()
        anchors = options.pop("trust_anchors", None) or self.trust_anchors()
        origins = options.pop("origins", None) or self.origins
        return Verifier(anchors, origins, **options)

    def describe(self) -> dict[str, Any]:
        """What a service would run with, for people (no secret: a Redis URL loses its password)."""
        return {
            "trust_anchors": self.trust_anchors_source if self.trust_anchors_source else None,
            "dev_issuer": str(self.dev_issuer_path) if self.dev_issuer_path else None,
            "allow_insecure_jwks": self.allow_insecure_jwks,
            "origins": list(self.origins),
            "audiences": list(self.audiences),
            "profile": self.profile,
            "mode": self.mode,
            "oth_headers": list(self.oth_headers),
            "replay_store": _redact_url(self.replay_store),
            "replay_wait_replicas": self.replay_wait_replicas,
            "leeway": self.leeway,
            "max_wpt_lifetime": self.max_wpt_lifetime,
            "max_wit_lifetime": self.max_wit_lifetime,
            "jwks_refresh": {
                "min": self.jwks_min_refresh,
                "default": self.jwks_default_refresh,
                "max": self.jwks_max_refresh,
                "max_stale": self.jwks_max_stale,
                "timeout": self.jwks_timeout,
                "unknown_kid_refresh": self.jwks_unknown_kid_refresh,
            },
            "log_level": self.log_level,
        }


def _redact_url(url: str) -> str:
    """A URL without its password (redis://user:secret@host -> redis://user:***@host)."""
    url, query, _ = url.partition("?")
    if query:
        url += "?..."  # a query may carry a password too
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.partition("/")[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user + ':' if user else ''}***@{host}"
