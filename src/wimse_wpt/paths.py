"""The request path the middleware judges: one canonical view per request, and the policy for
paths that name a resource ambiguously.

Every decision the middleware makes (exclusions, route rules, the ``aud`` target URI, the log
line) reads one :class:`RequestPath`, computed once per request by :func:`canonical_path`. Its
``route`` is the path the app routes on: the percent-decoded path with ``root_path`` removed
exactly as Starlette's router removes it. A path that names its resource ambiguously (dot
segments, empty segments, encoded ``/`` or ``\\``, ``%00``, invalid or double encodings) is
refused by default, because StaticFiles, handlers joining a ``{p:path}`` onto a directory, and
proxies resolve such spellings to a resource other than the one a prefix rule would see.
:class:`PathPolicy` offers Envoy's alternative instead: normalise (RFC 3986 section 5.2.4),
merge slashes, unescape encoded slashes; the app is then handed the normalised path, so what
is judged is what is served.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import quote

from starlette.types import Scope

from .problems import Reject

__all__ = ["PathPattern", "PathPolicy", "RequestPath", "canonical_path", "has_dot_segment", "route_path"]

_HEX = frozenset("0123456789abcdefABCDEF")
#: What a second percent-decoder (a proxy, a framework, a handler) would turn into a separator,
#: a dot or a NUL: refused in every mode, whatever this one layer makes of it.
_DOUBLE_ENCODED = ("%2e", "%2f", "%5c", "%00")
#: Characters left as they are when a decoded path is encoded again (no raw_path from the server).
_SAFE = ":@!$&'()*+,;=~"
_AMBIGUOUS = "The request path is ambiguous: send it without dot segments, empty segments or encoded separators."


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """What to do with paths that spell one resource in several ways (Envoy's HTTP connection
    manager options of the same names). The default refuses them all with ``400 path-ambiguous``.

    Args:
        normalize: remove ``.`` and ``..`` segments (RFC 3986 section 5.2.4) instead of refusing.
        merge_slashes: merge empty segments (``//``) instead of refusing; done before ``normalize``,
            as a file system reads them (``/a//../b`` is ``/b``).
        escaped_slashes: ``"reject"`` (``%2F``, ``%5C`` and ``\\`` refused) or ``"unescape"``
            (each becomes ``/`` before the steps above).

    When a step changes the path, the app is called with the normalised ``path`` and
    ``raw_path`` and the WPT's ``aud`` must name the normalised target URI. Segments made only
    of dots other than ``.`` and ``..`` (``...``, ``..;x``, ``.. ``), ``%00``, invalid
    percent-encoding or UTF-8, double encodings of ``.``/``/``/``\\``/NUL and non-ASCII bytes
    are refused whatever the policy.
    """

    normalize: bool = False
    merge_slashes: bool = False
    escaped_slashes: Literal["reject", "unescape"] = "reject"

    def __post_init__(self) -> None:
        if not isinstance(self.normalize, bool) or not isinstance(self.merge_slashes, bool):
            raise TypeError("normalize and merge_slashes must be booleans")
        if self.escaped_slashes not in ("reject", "unescape"):
            raise ValueError("escaped_slashes must be 'reject' or 'unescape'")

    @property
    def strict(self) -> bool:
        return not (self.normalize or self.merge_slashes or self.escaped_slashes == "unescape")


class RequestPath(NamedTuple):
    """One request's path, as every decision reads it (a tuple: built once per request)."""

    #: What exclusions, route rules and log lines judge: decoded, ``root_path`` removed as
    #: Starlette's router removes it, ``/`` for the root.
    route: str
    #: The path of the target URI the WPT's ``aud`` must name: percent-encoded, as sent (or as
    #: normalised), query excluded.
    target: str
    #: The scope's new ``path`` and ``raw_path`` when the policy normalised the path, else None.
    rewritten: tuple[str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class PathPattern:
    """``/orders`` (exactly that path) or ``/orders/*`` (``/orders`` itself and everything below
    it); a ``*`` after anything else than ``/`` is a plain prefix (``/v1*``)."""

    base: str
    prefix: bool

    @classmethod
    def parse(cls, pattern: str) -> PathPattern:
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ValueError(f"path pattern {pattern!r} must be a string starting with '/'")
        base, prefix = (pattern[:-1], True) if pattern.endswith("*") else (pattern, False)
        if "*" in base:
            raise ValueError(f"path pattern {pattern!r}: '*' may only end a pattern")
        # A pattern is matched against canonical paths only: one that is not canonical never matches.
        if "\\" in base or "\x00" in base or "//" in base or has_dot_segment(base):
            raise ValueError(f"path pattern {pattern!r} must not hold dot segments, '//' or backslashes")
        return cls(base, prefix)

    def matches(self, path: str) -> bool:
        if not self.prefix:
            return path == self.base
        # "/admin/*" covers "/admin" itself: an APIRouter(prefix="/admin") index route lives there.
        return path.startswith(self.base) or (self.base.endswith("/") and path == self.base[:-1])


def route_path(path: str, root_path: str) -> str:
    """``path`` less ``root_path``, exactly as Starlette's router computes it
    (``starlette._utils.get_route_path``): removed only at a ``/`` boundary."""
    if not root_path or not path.startswith(root_path):
        return path
    if len(path) == len(root_path):
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def _dot_like(segment: str) -> bool:
    """``.``, ``..`` and what some server reads as them: ``...``, ``..;params``, ``.. ``, ``..<TAB>``."""
    core = segment.partition(";")[0]
    return core[:1] == "." and not core.strip(". \t\r\n\x0b\x0c")


def has_dot_segment(path: str) -> bool:
    """Whether any segment of a decoded path is (or could be read as) a dot segment."""
    return "/." in path and any(_dot_like(s) for s in path.split("/"))


def _clean(path: str) -> bool:
    """The common case, checked with a few substring scans: nothing that could be ambiguous.
    It starts with "/": h11 passes any visible request-target (``GET admin/x``, ``*``) through."""
    return (
        path[:1] == "/"
        and path.isascii()
        and "%" not in path
        and "//" not in path
        and "/." not in path
        and "\\" not in path
        and "\x00" not in path
    )


def _decode(segment: str) -> str:
    """Strict percent-decoding of one segment: valid escapes, valid UTF-8, else ambiguous."""
    if "%" not in segment:
        return segment
    out = bytearray()
    i, n = 0, len(segment)
    while i < n:
        ch = segment[i]
        if ch == "%":
            pair = segment[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise Reject("path-ambiguous", _AMBIGUOUS)
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(ord(ch))
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:  # overlong forms (%C0%AE) and stray bytes included
        raise Reject("path-ambiguous", _AMBIGUOUS) from None


def _check_segment(decoded: str) -> None:
    """Refuse what names a separator, a NUL, or a second decoding's dot or separator."""
    if "/" in decoded or "\\" in decoded or "\x00" in decoded:
        raise Reject("path-ambiguous", _AMBIGUOUS)
    if "%" in decoded and any(d in decoded.lower() for d in _DOUBLE_ENCODED):
        raise Reject("path-ambiguous", _AMBIGUOUS)
    if not decoded.isascii():
        # Compatibility forms (fullwidth dot, solidus, percent) that NFKC folds into ASCII ones.
        folded = unicodedata.normalize("NFKC", decoded)
        if (
            "/" in folded
            or "\\" in folded
            or _dot_like(folded)
            or ("%" in folded and any(d in folded.lower() for d in _DOUBLE_ENCODED))
        ):
            raise Reject("path-ambiguous", _AMBIGUOUS)


def canonical_path(scope: Scope, policy: PathPolicy) -> RequestPath:
    """The one view of this request's path; raises ``Reject("path-ambiguous")`` if it has none."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    raw = scope.get("raw_path")
    if not raw:
        if _clean(path):
            return RequestPath(route_path(path, root) or "/", quote(path, safe="/" + _SAFE))
        return _judge(path, root, None, policy)
    wire_bytes = raw.partition(b"?")[0]  # some servers leave the query in raw_path
    if not wire_bytes.isascii():
        raise Reject("path-ambiguous", _AMBIGUOUS)
    wire = wire_bytes.decode("ascii")
    if wire == path and _clean(wire):  # the common case: a few substring scans
        return RequestPath((route_path(path, root) if root else path) or "/", wire)
    try:
        return _judge(path, root, wire, policy)
    except _Disagree:
        pass
    # A router that moved a prefix from path into root_path (and left raw_path whole) hands
    # path = the rest: judge the rest of raw_path against it, and keep the prefix in aud.
    prefix, rest = _root_in_wire(wire, root)
    where = _judge(path, root, rest, policy)
    rewritten = where.rewritten and (where.rewritten[0], prefix.encode("ascii") + where.rewritten[1])
    return RequestPath(where.route, prefix + where.target, rewritten)


class _Disagree(Reject):
    """``path`` is not the decoded ``raw_path``."""

    def __init__(self) -> None:
        super().__init__("path-ambiguous", _AMBIGUOUS)


def _root_in_wire(wire: str, root: str) -> tuple[str, str]:
    """``wire`` split into the segments that spell ``root_path`` and the rest, or ambiguous."""
    n = root.count("/") + 1
    parts = wire.split("/", n)
    if not root or root.endswith("/") or len(parts) <= n or "/".join(_decode(p) for p in parts[:n]) != root:
        raise Reject("path-ambiguous", _AMBIGUOUS)  # a layer changed one view and not the other
    return "/".join(parts[:n]), "/" + parts[n]


def _judge(path: str, root: str, wire: str | None, policy: PathPolicy) -> RequestPath:
    """The slow path: segment by segment, linear in the path's length."""
    unescape = policy.escaped_slashes == "unescape"
    if wire is None:  # the server gave no raw_path: the decoded path is all there is
        seen = path.replace("\\", "/") if unescape else path
        decoded = seen.split("/")
        wires = [quote(s, safe=_SAFE) for s in decoded]
    else:
        if unescape:
            for escaped in ("%2F", "%2f", "%5C", "%5c", "\\"):
                wire = wire.replace(escaped, "/")
        wires = wire.split("/")
        decoded = [_decode(s) for s in wires]
        seen = "/".join(decoded)
        if seen != (path.replace("\\", "/") if unescape else path):
            raise _Disagree()
    if not seen.startswith("/"):  # asterisk or absolute form: nothing a route rule could name
        raise Reject("path-ambiguous", _AMBIGUOUS)
    for segment in decoded:
        _check_segment(segment)
    route = route_path(seen, root)
    # Segments [0, k) are root_path (configuration, kept as is); the route is "/" + the rest.
    k = root.count("/") + 1 if len(route) < len(seen) else 1
    rest_w, rest_d = wires[k:], decoded[k:]
    if route and "/" + "/".join(rest_d) != route:
        raise Reject("path-ambiguous", _AMBIGUOUS)
    out_w: list[str] = []
    out_d: list[str] = []
    last = len(rest_d) - 1
    for i, (w, d) in enumerate(zip(rest_w, rest_d, strict=True)):
        if d == "" and i != last:
            if not policy.merge_slashes:
                raise Reject("path-ambiguous", _AMBIGUOUS)
            continue
        if d in (".", ".."):
            if not policy.normalize:
                raise Reject("path-ambiguous", _AMBIGUOUS)
            if d == ".." and out_d:
                out_w.pop()
                out_d.pop()
            if i == last:  # "/a/.." is "/", "/a/." is "/a/": the trailing slash stays
                out_w.append("")
                out_d.append("")
            continue
        if _dot_like(d):  # "...", "..;x": no normalisation reads these the same everywhere
            raise Reject("path-ambiguous", _AMBIGUOUS)
        out_w.append(w)
        out_d.append(d)
    prefix_w = "/".join(wires[:k])
    if not route:  # the path is root_path itself
        new_route, target = "", (prefix_w or "/")
    else:
        new_route, target = "/" + "/".join(out_d), prefix_w + "/" + "/".join(out_w)
    new_path = seen[: len(seen) - len(route)] + new_route
    rewritten = None
    if new_path != path or (wire is not None and target != wire):
        rewritten = (new_path, target.encode("ascii"))
    return RequestPath(new_route or "/", target, rewritten)
