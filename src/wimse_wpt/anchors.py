"""Trust anchors: per trust domain, the keys that may sign a WIT.

Anchors come from configuration only; nothing named by a token (``iss``, ``jku``, ``x5u``)
is ever fetched. Each trust domain has one or more key sources; a source hands out an
immutable :class:`KeySet` and a generation number that changes whenever its keys do, so
the verifier's WIT cache can drop entries whose signing key went away.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from .identifiers import is_trust_domain
from .problems import Reject
from .tokens import DEFAULT_ALGORITHMS, PublicKey, TokenError, import_public_key

logger = logging.getLogger("wimse_wpt")

#: ``use`` values of JWKS entries that may sign WITs ("wit-svid" is SPIFFE's bundle name).
SIGNATURE_USES = frozenset({"sig", "wit-svid"})


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[PublicKey, ...]

    def select(self, kid: str | None, alg: str) -> list[PublicKey]:
        if kid is not None:
            return [k for k in self.keys if k.kid == kid and k.fits(alg)]
        return [k for k in self.keys if k.fits(alg)]


EMPTY = KeySet(())


def parse_jwks(
    document: object, algorithms: frozenset[str] = DEFAULT_ALGORITHMS, *, strict: bool = True
) -> KeySet:
    """Validate a JWKS (or SPIFFE bundle, which is a JWKS with extra members).

    Entries whose ``use`` is not a signature use are skipped. A bad signature entry is an
    error when ``strict`` (configuration), and skipped otherwise (a remote set must not lose
    its good keys to one bad neighbour). Duplicate ``kid`` values are always an error.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is a JSON object with a 'keys' array")
    keys: list[PublicKey] = []
    kids: set[str] = set()
    for index, entry in enumerate(document["keys"]):
        use = entry.get("use", "sig") if isinstance(entry, Mapping) else "sig"
        if not isinstance(use, str) or use not in SIGNATURE_USES:
            continue
        if use == "wit-svid":
            entry = {k: v for k, v in entry.items() if k != "use"}
        try:
            key = import_public_key(entry, algorithms)
        except TokenError as exc:
            if strict:
                raise ValueError(f"JWKS entry {index}: {exc}") from None
            continue
        if key.kid is not None:
            if key.kid in kids:
                raise ValueError(f"JWKS has the kid {key.kid!r} more than once")
            kids.add(key.kid)
        keys.append(key)
    return KeySet(tuple(keys))


@runtime_checkable
class KeySource(Protocol):
    """Where one trust domain's keys come from."""

    @property
    def generation(self) -> int:
        """Changes whenever the keys change."""
        ...

    async def keys(self) -> KeySet:
        """The current keys. Raises ``KeysUnavailable`` when there are none to trust yet."""
        ...

    async def refresh(self) -> KeySet:
        """Called on an unknown ``kid``: may look again, within the source's own rate limit."""
        ...


class KeysUnavailable(Exception):
    """A key source cannot say which keys to trust (never fetched, or stale past its limit)."""


class StaticKeys:
    """Keys given in code or configuration: a JWKS dict."""

    def __init__(self, jwks: Mapping[str, Any], algorithms: frozenset[str] = DEFAULT_ALGORITHMS):
        self._keys = parse_jwks(jwks, algorithms)

    generation = 0

    async def keys(self) -> KeySet:
        return self._keys

    async def refresh(self) -> KeySet:
        return self._keys


def _fingerprint(keys: KeySet) -> frozenset[str]:
    return frozenset(json.dumps(dict(k.jwk), sort_keys=True) for k in keys.keys)


class JWKSFile:
    """A JWKS or SPIFFE trust bundle file, re-read when it changes on disk.

    The file is checked (one ``stat``) at most every ``check_interval`` seconds, when the
    verifier asks whether the keys changed. A file that cannot be read or parsed at
    construction is a configuration error; later, a bad rewrite (an agent caught
    mid-write) keeps the last good keys and logs a warning.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._algorithms = frozenset(algorithms)
        self._interval = check_interval
        self._clock = clock
        self._generation = 0
        try:
            self._stamp, self._keys = self._read()
        except (OSError, ValueError, RecursionError) as exc:
            raise ValueError(f"trust anchor file {str(self.path)!r}: {type(exc).__name__}: {exc}"[:300]) from None
        self._checked = clock()

    def _read(self) -> tuple[tuple[int, int, int], KeySet]:
        stat = self.path.stat()
        document = json.loads(self.path.read_bytes())
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino), parse_jwks(document, self._algorithms)

    def _check(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._checked < self._interval:
            return
        self._checked = now
        try:
            stat = self.path.stat()
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) == self._stamp:
                return
            stamp, keys = self._read()
        except Exception as exc:  # whatever the file holds now, the last good keys stay
            logger.warning("trust anchor file %s unusable, keeping the last good keys: %s", self.path, type(exc).__name__)
            return
        if _fingerprint(keys) != _fingerprint(self._keys):
            self._generation += 1
        self._stamp, self._keys = stamp, keys

    @property
    def generation(self) -> int:
        self._check()
        return self._generation

    async def keys(self) -> KeySet:
        self._check()
        return self._keys

    async def refresh(self) -> KeySet:
        self._check(force=True)
        return self._keys


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


_UNKNOWN_KID_RETRY = (
    "No trust anchor key has this kid yet; the trust domain's keys are looked up again within {wait:g} s: "
    "retry then if its issuer has just published it."
)

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.I)


class RemoteJWKS:
    """A JWKS fetched with httpx from a URL configured out of band (never from a token).

    Keys are refreshed after ``Cache-Control: max-age`` (``default_refresh`` without it),
    clamped to ``[min_refresh, max_refresh]``, in the background: requests keep using the
    current keys meanwhile. An unknown ``kid`` (an issuer that just rotated) asks for a
    refresh sooner: at most one fetch per ``unknown_kid_refresh`` seconds (default 5, never
    more than ``min_refresh``), single flight, so a flood of unknown kids is at most one
    fetch per interval per source, whatever their number. While the endpoint fails, the last good keys serve until
    they are ``max_stale`` seconds old; then verification fails closed (503). Each fetch is
    bounded by ``timeout`` seconds in all and ``max_bytes`` of body. Only https, unless
    ``allow_insecure`` and the host is loopback (local testing).
    """

    def __init__(
        self,
        url: str,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        *,
        min_refresh: float = 30.0,
        unknown_kid_refresh: float = 5.0,
        default_refresh: float = 300.0,
        max_refresh: float = 3600.0,
        max_stale: float = 24 * 3600.0,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        allow_insecure: bool = False,
        verify: Any = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (allow_insecure and parts.scheme == "http" and _is_loopback(parts.hostname)):
            raise ValueError(
                f"JWKS URL {url!r} must be https (http only to a loopback host with allow_insecure, for local testing)"
            )
        if not parts.hostname or parts.username or parts.password:
            raise ValueError(f"JWKS URL {url!r} needs a host and no userinfo")
        if not 0 <= min_refresh <= default_refresh <= max_refresh:
            raise ValueError("refresh bounds must satisfy 0 <= min_refresh <= default_refresh <= max_refresh")
        if not 0 <= unknown_kid_refresh <= 86400:
            raise ValueError("unknown_kid_refresh must be between 0 and 86400 seconds")
        if not 0 < timeout <= 60 or max_stale <= 0 or not 0 < max_bytes <= 16 * 1024 * 1024:
            raise ValueError("timeout, max_stale and max_bytes must be positive (timeout at most 60 s)")
        self.url = url
        self._algorithms = frozenset(algorithms)
        self.min_refresh, self.default_refresh, self.max_refresh = min_refresh, default_refresh, max_refresh
        #: How soon after the last fetch an unknown kid may ask for another (the rotation wait).
        self.unknown_kid_refresh = min(unknown_kid_refresh, min_refresh)
        self.max_stale, self.timeout, self.max_bytes = max_stale, timeout, max_bytes
        self._verify = verify
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = -math.inf  # last success
        self._refresh_at = -math.inf  # when the keys are due for a refresh
        self._attempted_at = -math.inf  # last attempt, successful or not
        self._inflight: asyncio.Task[None] | None = None
        self._usable = False
        self._generation = 0
        self.fetches = 0  # attempts made, for observability

    @property
    def generation(self) -> int:
        now = self._clock()
        if now >= self._refresh_at and self._keys is not None:
            self._start_fetch(now)  # due: refresh in the background
        usable = self._keys is not None and now - self._fetched_at <= self.max_stale
        if usable != self._usable:
            # Keys arriving, or growing too stale to trust: cached WITs must be checked again.
            self._usable = usable
            self._generation += 1
        return self._generation

    async def keys(self) -> KeySet:
        now = self._clock()
        if self._keys is None:
            await self._fetch_now(now)
        elif now >= self._refresh_at:
            self._start_fetch(now)
        if self._keys is None or self._clock() - self._fetched_at > self.max_stale:
            raise KeysUnavailable(self.url)
        return self._keys

    async def refresh(self) -> KeySet:
        """An unknown kid: fetch now unless a fetch started less than ``unknown_kid_refresh``
        seconds ago (then the current keys answer, and the WIT is refused meanwhile)."""
        await self._fetch_now(self._clock(), self.unknown_kid_refresh)
        return await self.keys()

    def _start_fetch(self, now: float, interval: float | None = None) -> asyncio.Task[None] | None:
        if self._inflight is not None and not self._inflight.done():
            return self._inflight
        if now - self._attempted_at < (self.min_refresh if interval is None else interval):
            return None  # rate limited: at most one fetch per interval, whoever asks
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        self._attempted_at = now
        self._inflight = loop.create_task(self._fetch())
        return self._inflight

    async def _fetch_now(self, now: float, interval: float | None = None) -> None:
        task = self._start_fetch(now, interval)
        if task is not None:
            await asyncio.shield(task)

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout):
                body, cache_control = await self._get()
            keys = parse_jwks(json.loads(body), self._algorithms, strict=False)
            if not keys.keys:
                raise ValueError("no usable signature keys")
        except Exception as exc:  # whatever the endpoint sent, the last good keys stay
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            logger.warning("JWKS fetch from %s failed (%s); keeping the last good keys", self.url, reason[:200])
            return
        match = _MAX_AGE.search(cache_control or "")
        refresh_in = float(match.group(1)) if match else self.default_refresh
        refresh_in = min(max(refresh_in, self.min_refresh), self.max_refresh)
        now = self._clock()
        if self._keys is None or _fingerprint(keys) != _fingerprint(self._keys):
            self._generation += 1
        self._keys, self._fetched_at, self._refresh_at = keys, now, now + refresh_in

    async def _get(self) -> tuple[bytes, str | None]:
        client = httpx.AsyncClient(timeout=self.timeout, verify=self._verify, follow_redirects=False)
        # identity: the size cap counts the bytes as sent, and no decompression can outgrow it.
        headers = {"accept": "application/json", "accept-encoding": "identity"}
        async with client, client.stream("GET", self.url, headers=headers) as response:
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise ValueError("response too large")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ValueError("response too large")
            return bytes(body), response.headers.get("cache-control")


def _source_hint(domain: str, item: object) -> str:
    """What to write instead of a bare path or URL, which TrustAnchors does not read itself."""
    text = os.fsdecode(item) if isinstance(item, (str, bytes, os.PathLike)) else str(item)
    shown = text if len(text) <= 80 else text[:77] + "..."
    if text.startswith(("https://", "http://")):
        return (
            f"trust domain {domain!r}: {shown!r} is a URL; pass RemoteJWKS({shown!r}), "
            "or use TrustAnchors.from_config, which reads URLs and file paths"
        )
    return (
        f"trust domain {domain!r}: {shown!r} is a file path, not a JWKS; pass JWKSFile({shown!r}), "
        "or use TrustAnchors.from_config, which reads file paths and URLs"
    )


AnchorConfig = KeySource | Mapping[str, Any] | Sequence[KeySource | Mapping[str, Any]]


class TrustAnchors:
    """Trust domain name -> key sources. A JWKS dict is taken as :class:`StaticKeys`."""

    def __init__(
        self,
        domains: Mapping[str, AnchorConfig],
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
    ) -> None:
        algs = frozenset(algorithms)
        if not domains:
            raise ValueError("at least one trust domain must be configured")
        self._sources: dict[str, tuple[KeySource, ...]] = {}
        for domain, config in domains.items():
            if not is_trust_domain(domain):
                raise ValueError(f"trust domain {domain!r} is not a canonical name")
            if isinstance(config, (str, bytes, os.PathLike)):
                raise ValueError(_source_hint(domain, config))
            items = [config] if isinstance(config, (Mapping, KeySource)) else list(config)
            for item in items:
                if isinstance(item, (str, bytes, os.PathLike)):
                    raise ValueError(_source_hint(domain, item))
            if not items:
                raise ValueError(f"trust domain {domain!r} has no key source")
            self._sources[domain] = tuple(
                item if isinstance(item, KeySource) else StaticKeys(item, algs) for item in items
            )
        self.trust_domains = frozenset(self._sources)
        # Domains whose one source is a StaticKeys: keys that never change, so the key found for
        # a (kid, alg) is the one found again. Remembered only once found: bounded by the keys.
        self._static = frozenset(d for d, s in self._sources.items() if len(s) == 1 and type(s[0]) is StaticKeys)
        self._found: dict[tuple[str, str | None, str], PublicKey] = {}

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        base_dir: str | os.PathLike[str] = ".",
        allow_insecure: bool = False,
        **remote_options: Any,
    ) -> TrustAnchors:
        """Anchors from a JSON-like mapping: each trust domain maps to a JWKS object, the
        path of a JWKS or SPIFFE bundle file, an ``https://`` JWKS URL, or a list of those."""
        if not isinstance(config, Mapping):
            raise ValueError("trust anchor configuration must map trust domain names to key sources")
        algs = frozenset(algorithms)

        def source(item: object) -> KeySource | Mapping[str, Any]:
            if isinstance(item, Mapping):
                return item
            if isinstance(item, str) and item.startswith(("https://", "http://")):
                return RemoteJWKS(item, algs, allow_insecure=allow_insecure, **remote_options)
            if isinstance(item, str) and item:
                return JWKSFile(Path(base_dir) / item, algs)
            raise ValueError(f"unrecognised key source {item!r}: a JWKS object, a file path or a URL")

        domains: dict[str, AnchorConfig] = {}
        for domain, value in config.items():
            items = value if isinstance(value, list) else [value]
            domains[domain] = [source(item) for item in items]
        return cls(domains, algorithms=algs)

    @staticmethod
    async def _gather(
        sources: tuple[KeySource, ...], kid: str | None, alg: str, *, refresh: bool
    ) -> tuple[list[PublicKey], int]:
        found: list[PublicKey] = []
        unavailable = 0
        for source in sources:
            try:
                keys = await (source.refresh() if refresh else source.keys())
            except KeysUnavailable:
                unavailable += 1
                continue
            except Exception as exc:  # a source of the user's failing some other way: fail closed
                logger.error("key source %s raised %s", type(source).__name__, type(exc).__name__)
                unavailable += 1
                continue
            found += keys.select(kid, alg)
        return found, unavailable

    def sources(self, trust_domain: str) -> tuple[KeySource, ...]:
        return self._sources.get(trust_domain, ())

    def generation(self, trust_domain: str) -> int:
        """Grows whenever any of the domain's sources changes its keys (generations only grow)."""
        sources = self._sources.get(trust_domain, ())
        if len(sources) == 1:
            return sources[0].generation
        return sum(s.generation for s in sources)

    async def find_key(self, trust_domain: str, kid: str | None, alg: str) -> PublicKey:
        """The one anchor key for this WIT header, or a rejection.

        With ``kid`` the key is chosen by it; without, the domain's keys must fit ``alg``
        unambiguously. A source that cannot say which keys to trust refuses (fail closed).
        """
        static = trust_domain in self._static and (kid is None or type(kid) is str)
        if static and (key := self._found.get((trust_domain, kid, alg))) is not None:
            return key
        sources = self._sources.get(trust_domain)
        if not sources:
            raise Reject("wit-trust-domain", "The workload's trust domain is not trusted here.")
        found, unavailable = await self._gather(sources, kid, alg, refresh=False)
        if not found and kid is not None:
            # An unknown kid may mean the issuer rotated: ask the sources to look again.
            found, unavailable = await self._gather(sources, kid, alg, refresh=True)
        if len(found) == 1:
            if static:
                self._found[trust_domain, kid, alg] = found[0]
            return found[0]
        if not found and unavailable:
            raise Reject(
                "trust-anchors-unavailable",
                "The trust domain's keys could not be obtained; the request cannot be verified.",
            )
        if not found:
            # A remote issuer may have published this kid since the last fetch: say when
            # it will be looked up again, so a caller that just rotated knows to retry.
            wait = max((getattr(s, "unknown_kid_refresh", 0.0) for s in sources), default=0.0)
            if kid is not None and wait:
                raise Reject("wit-key-unknown", _UNKNOWN_KID_RETRY.format(wait=wait))
            raise Reject("wit-key-unknown", "No trust anchor key matches the token's kid and alg.")
        raise Reject("wit-key-unknown", "More than one trust anchor key fits; the token needs a kid.")
