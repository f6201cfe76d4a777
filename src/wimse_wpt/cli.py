"""``wimse-wpt``: inspect a request's tokens, make development keys and tokens, check a
service's configuration.

    wimse-wpt inspect --anchors example.com=jwks.json --origin https://api.example.com \\
                      --path /orders < request.txt
    wimse-wpt keygen --issuer example.com -o issuer.json     # a dev issuer (DevIssuer file)
    wimse-wpt keygen -o workload.jwk                          # a workload key (private JWK)
    wimse-wpt jwks issuer.json > jwks.json                    # the public JWKS to trust
    wimse-wpt mint --issuer issuer.json --key workload.jwk \\
                   --sub wimse://example.com/me --aud https://api.example.com/orders
    wimse-wpt check-config                                    # what WIMSE_* resolve to

Exit codes: 0 success (inspect: the request passes), 1 failure (inspect: it is refused;
check-config: something a service needs is unavailable), 2 usage or configuration error.

``inspect`` runs the real :class:`~wimse_wpt.Verifier` at the time given by ``--at`` and
presents its verdict as the checklist of :mod:`wimse_wpt.checks`. It prints the decoded
tokens, on the terminal of the person who holds them; nothing is logged.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .anchors import JWKSFile, KeySource, RemoteJWKS, TrustAnchors
from .checks import CHECK_FOR_CODE, CHECKS
from .client import SigningKey, mint_wpt
from .devissuer import DevIssuer
from .health import Readiness
from .problems import PROFILES, VerificationError
from .replay import MemoryReplayCache
from .settings import VARIABLES, Settings
from .tokens import ALGORITHMS
from .verifier import Verifier, normalize_uri, request_path

MAX_INPUT_BYTES = 1024 * 1024  # a request's headers on stdin, at most


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2."""


# --- key files -------------------------------------------------------------------------------


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None


def load_key_file(path: str) -> tuple[SigningKey, DevIssuer | None]:
    """A private key from a key file: a private JWK (``keygen``) or a dev issuer file
    (``keygen --issuer``, ``DevIssuer.save``). Returns the issuer too for the latter."""
    data = _read_json(path)
    if isinstance(data, dict) and "trust_domain" in data:
        try:
            issuer = DevIssuer.load(path)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return issuer.key, issuer
    if not isinstance(data, dict) or "kty" not in data:
        raise UsageError(f"{path} is neither a private JWK nor a dev issuer file")
    try:
        return SigningKey.from_jwk(data), None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a usable private key ({exc})") from None


def _write_private(path: str, data: dict[str, Any], force: bool) -> None:
    """Write a secret: mode 0600 from the first byte, never over an existing file unless forced."""
    # O_NOFOLLOW: a planted symlink cannot redirect a private key into another file.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; give --force to replace it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a forced rewrite of a file that had looser bits
        json.dump(data, handle, indent=2)
        handle.write("\n")


# --- inspect: reading the request --------------------------------------------------------------


def _strip_line(line: str) -> str:
    """Accept header lines as people paste them: ``Name: value``, curl -v's ``> Name: value``,
    and ``-H 'Name: value'`` as ``mint --curl`` prints them."""
    line = line.strip()
    if line.startswith("> "):
        line = line[2:].strip()
    if line.startswith("-H "):
        try:
            parts = shlex.split(line)
        except ValueError:
            raise UsageError(f"cannot read {line[:60]!r}: unbalanced quotes") from None
        line = parts[1] if len(parts) > 1 else ""
    return line


def parse_request(text: str) -> tuple[str | None, str | None, list[tuple[str, str]]]:
    """Method, path (no query) and header fields of a request pasted as text; a request
    line is optional, and reading stops at the first empty line (the body)."""
    method = path = None
    headers: list[tuple[str, str]] = []
    for index, raw in enumerate(text.splitlines()):
        line = _strip_line(raw)
        if not line:
            if headers or method:
                break
            continue
        if index == 0 or (method is None and not headers):
            parts = line.split()
            if len(parts) in (2, 3) and parts[0].isupper() and ":" not in parts[0]:
                method, target = parts[0], parts[1]
                if "://" in target:
                    target = "/" + target.split("://", 1)[1].partition("/")[2]
                path = target.partition("?")[0].partition("#")[0] or "/"
                continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise UsageError(f"not a header line: {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    return method, path, headers


def _decode_part(part: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None


def decode_token(token: str | None) -> dict[str, Any] | None:
    """Header and claims of a compact JWS, leniently (for display only: nothing is trusted)."""
    if not token:
        return None
    parts = token.strip().split(".")
    if len(parts) != 3:
        return {"error": f"not a compact JWS ({len(parts)} parts instead of 3)"}
    header, claims = _decode_part(parts[0]), _decode_part(parts[1])
    result: dict[str, Any] = {"header": header, "claims": claims}
    if header is None or claims is None:
        result["error"] = "a part is not base64url-encoded JSON"
    return result


def _tokens(headers: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    wit = wpt = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == "workload-identity-token" and wit is None:
            wit = value
        elif lowered == "workload-proof-token" and wpt is None:
            wpt = value
        elif lowered == "authorization" and value[:4].lower() == "wpt " and wpt is None:
            wpt = value[4:].strip()
    return wit, wpt


def parse_time(value: str) -> float:
    """Seconds since the epoch, or an ISO 8601 time (``2025-04-24T15:35:10Z``; UTC if no zone)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither seconds since the epoch nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _relative(moment: object, now: float) -> str:
    if isinstance(moment, bool) or not isinstance(moment, (int, float)):
        return "not a number"
    delta = float(moment) - now
    span = abs(delta)
    text = f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min" if span < 7200 else f"{span / 3600:.1f} h"
    return f"{_iso(float(moment))}, {'in ' + text if delta > 0 else text + ' ago'}"


# --- inspect: anchors --------------------------------------------------------------------------


def _anchor_source(value: str, allow_insecure: bool) -> KeySource | dict[str, Any]:
    if value.startswith("{"):
        try:
            document = json.loads(value)
        except ValueError as exc:
            raise UsageError(f"inline JWKS is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise UsageError("an inline JWKS is a JSON object")
        return document
    if value.startswith(("https://", "http://")):
        return RemoteJWKS(value, allow_insecure=allow_insecure)
    return JWKSFile(value)


def build_anchors(specs: Sequence[str], allow_insecure: bool) -> TrustAnchors:
    """``DOMAIN=SOURCE`` (a JWKS or SPIFFE bundle file, a JWKS URL, or inline JWKS JSON), or
    a trust anchors document (a JSON file or inline JSON) as WIMSE_TRUST_ANCHORS takes it."""
    domains: dict[str, list[Any]] = {}
    documents: list[tuple[dict[str, Any], Path]] = []
    try:
        for spec in specs:
            domain, equals, source = spec.partition("=")
            if equals and not spec.startswith("{") and "/" not in domain and domain:
                domains.setdefault(domain, []).append(_anchor_source(source, allow_insecure))
                continue
            settings = Settings(trust_anchors_source=spec)
            documents.append(settings.anchors_config())
        for document, base in documents:
            anchors = TrustAnchors.from_config(document, base_dir=base, allow_insecure=allow_insecure)
            for domain in anchors.trust_domains:
                domains.setdefault(domain, []).extend(anchors.sources(domain))
        return TrustAnchors(domains)
    except ValueError as exc:
        raise UsageError(f"trust anchors: {exc}") from None


# --- inspect -----------------------------------------------------------------------------------


async def _verify(verifier: Verifier, headers: list[tuple[str, str]], path: str, method: str) -> tuple[Any, Any]:
    try:
        return await verifier.verify(headers, path=path, method=method), None
    except VerificationError as error:
        return None, error


def checklist(code: str | None) -> list[dict[str, str]]:
    """Each check with its state: ``passed`` up to the failing one, ``failed``, then
    ``not reached``; checks the service makes around the verifier are ``not checked``."""
    failing = CHECK_FOR_CODE.get(code) if code else None
    unknown = code == "internal-error" or (code is not None and failing is None)
    rows = []
    reached = True
    for check in CHECKS:
        if check is failing:
            state, reached = "failed", False
        elif unknown:
            state = "unknown"
        elif check.name == "internal":
            continue  # only worth a line when it is what failed
        elif not reached:
            state = "not reached"
        elif not check.by_verifier:
            state = "not checked"
        else:
            state = "passed"
        rows.append({"check": check.name, "stage": check.stage, "state": state, "description": check.description})
    return rows


def inspect_request(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    method: str | None = None
    path: str | None = None
    headers: list[tuple[str, str]] = []
    if args.wit is None and args.wpt is None and not args.header:
        text = stdin.read(MAX_INPUT_BYTES + 1)
        if len(text) > MAX_INPUT_BYTES:
            raise UsageError(f"more than {MAX_INPUT_BYTES} bytes on standard input")
        method, path, headers = parse_request(text)
        if not headers:
            raise UsageError("no header lines on standard input (or give --wit and --wpt)")
    for line in args.header:
        _, _, parsed = parse_request(line)
        headers += parsed
    profile = args.profile or os.environ.get("WIMSE_PROFILE") or None
    guessed = False
    if profile is None:
        # A service speaks one profile; without being told, take the one the headers use.
        profile = "wpt-02" if any(n.lower() == "authorization" and v[:4].lower() == "wpt " for n, v in headers) else "wpt-01"
        guessed = True
    if profile not in PROFILES:
        raise UsageError(f"profile must be one of {', '.join(PROFILES)}")
    if args.wit is not None:
        headers.append(("Workload-Identity-Token", args.wit))
    if args.wpt is not None:
        headers.append(("Authorization", f"WPT {args.wpt}") if profile == "wpt-02" else ("Workload-Proof-Token", args.wpt))
    if args.bearer is not None:
        headers.append(("Authorization", f"Bearer {args.bearer}"))
    path = args.path or path
    if not path:
        raise UsageError("give --path (the request path the proof is for), or a request line on standard input")
    method = args.method or method or "GET"
    origins = args.origin or [o.strip() for o in os.environ.get("WIMSE_ORIGINS", "").split(",") if o.strip()]
    if not origins:
        raise UsageError("give --origin (where the service is reached, e.g. https://api.example.com) or WIMSE_ORIGINS")
    if args.anchors:
        anchors = build_anchors(args.anchors, args.allow_insecure_jwks)
    else:
        try:
            anchors = Settings.from_env().trust_anchors()
        except ValueError as exc:
            raise UsageError(f"give --anchors DOMAIN=JWKS (file, URL or inline JSON); from the environment: {exc}") from None
    at = args.at if args.at is not None else time.time()
    try:
        verifier = Verifier(
            anchors, origins, profile=profile,  # type: ignore[arg-type]
            replay_cache=MemoryReplayCache(timer=lambda: at), oth_headers=args.oth_header, audiences=args.audience,
            leeway=args.leeway, max_wpt_lifetime=args.max_wpt_lifetime, max_wit_lifetime=args.max_wit_lifetime,
            clock=lambda: at,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    workload, error = asyncio.run(_verify(verifier, headers, path, method))
    wit, wpt = _tokens(headers)
    target = [o + request_path(path) for o in verifier.origins]
    result: dict[str, Any] = {
        "result": "pass" if error is None else "fail",
        "at": at,
        "at_iso": _iso(at),
        "profile": profile,
        "profile_guessed": guessed,
        "method": method,
        "path": path,
        "expected_aud": target + sorted(verifier.audiences),
        "trust_domains": sorted(verifier.anchors.trust_domains),
    }
    if error is None:
        result.update(
            workload=workload.identifier, trust_domain=workload.trust_domain, bound_tokens=sorted(workload.bound_tokens)
        )
    else:
        problem = error.problem
        result.update(code=problem.code, status=problem.status, title=problem.title, detail=problem.detail,
                      workload=error.identifier)
    result["checks"] = checklist(None if error is None else error.problem.code)
    result["wit"], result["wpt"] = decode_token(wit), decode_token(wpt)
    if error is not None:
        hint = hint_for(error.problem.code, result, headers, verifier)
        if hint:
            result["hint"] = hint
    return result


def hint_for(code: str, result: dict[str, Any], headers: list[tuple[str, str]], verifier: Verifier) -> str | None:
    """What to look at for the refusals people meet first (the tokens are theirs: values may be named)."""
    names = {name.lower() for name, _ in headers}
    wit_claims = (result.get("wit") or {}).get("claims") or {}
    wit_header = (result.get("wit") or {}).get("header") or {}
    wpt_claims = (result.get("wpt") or {}).get("claims") or {}
    if code == "wpt-missing":
        if result["profile"] == "wpt-01" and any(n.lower() == "authorization" and v[:4].lower() == "wpt " for n, v in headers):
            return "the request carries a wpt-02 proof (Authorization: WPT); this check speaks wpt-01 (--profile wpt-02?)"
        if result["profile"] == "wpt-02" and "workload-proof-token" in names:
            return "the request carries a wpt-01 proof (Workload-Proof-Token); this check speaks wpt-02 (--profile wpt-01?)"
    if code == "wpt-audience" and isinstance(wpt_claims, dict):
        expected = ", ".join(result["expected_aud"])
        return f"aud is {str(wpt_claims.get('aud'))[:200]!r}; expected one of {expected} (--origin, --path?)"
    if code in ("wit-trust-domain", "wit-key-unknown") and isinstance(wit_claims, dict):
        sub = str(wit_claims.get("sub"))[:200]
        if code == "wit-trust-domain":
            return f"sub is {sub!r}; trusted trust domains: {', '.join(result['trust_domains'])}"
        kid = wit_header.get("kid") if isinstance(wit_header, dict) else None
        return f"the WIT names kid {kid!r}, alg {wit_header.get('alg')!r}: is that key in the trust domain's JWKS?"
    if code == "oth-unknown" and isinstance(wpt_claims, dict) and isinstance(wpt_claims.get("oth"), dict):
        return f"oth binds {', '.join(sorted(wpt_claims['oth']))}; give each with --oth-header if the service accepts it"
    if code in ("wpt-lifetime", "wit-lifetime"):
        limit = verifier.max_wpt_lifetime if code == "wpt-lifetime" else verifier.max_wit_lifetime
        option = "--max-wpt-lifetime" if code == "wpt-lifetime" else "--max-wit-lifetime"
        return f"exp is further than {limit:g} s after --at ({option} sets the service's limit)"
    return None


_MARKS = {"passed": "ok  ", "failed": "FAIL", "not reached": "--  ", "not checked": "n/a ", "unknown": "?   "}


def print_inspection(result: dict[str, Any], out: TextIO) -> None:
    if result["result"] == "pass":
        out.write(f"PASS  {result['workload']} (trust domain {result['trust_domain']})\n")
    else:
        out.write(f"FAIL  {result['code']} ({result['status']}): {result['title']}\n      {result['detail']}\n")
        if result.get("workload"):
            out.write(f"      workload {result['workload']} (its WIT verified)\n")
        if result.get("hint"):
            out.write(f"hint  {result['hint']}\n")
    guessed = " (guessed from the headers; give --profile)" if result["profile_guessed"] else ""
    out.write(f"\nat        {result['at_iso']} ({result['at']:.0f})\n")
    out.write(f"profile   {result['profile']}{guessed}\n")
    out.write(f"request   {result['method']} {result['path']}\n")
    out.write(f"aud       must be one of: {', '.join(result['expected_aud'])}\n")
    out.write(f"trusting  {', '.join(result['trust_domains'])}\n\nchecks\n")
    width = max(len(c["check"]) for c in result["checks"])
    for row in result["checks"]:
        note = ""
        if row["state"] == "failed":
            note = f"  <- {result['code']}"
        elif row["check"] == "replay" and row["state"] == "passed":
            note = "  (against an empty cache: a service that saw this proof refuses it)"
        out.write(f"  {_MARKS[row['state']]}  {row['check']:<{width}}  {row['description']}{note}\n")
    for which in ("wit", "wpt"):
        decoded = result[which]
        out.write(f"\n{which.upper()}  ")
        if decoded is None:
            out.write("(not on the request)\n")
            continue
        if "error" in decoded:
            out.write(f"({decoded['error']})\n")
        out.write(f"header {json.dumps(decoded.get('header'), sort_keys=True)}\n")
        claims = decoded.get("claims")
        shown = json.dumps(claims, indent=2, sort_keys=True).replace("\n", "\n     ")
        out.write(f"     claims {shown}\n")
        if isinstance(claims, dict):
            for name in ("iat", "nbf", "exp"):
                if name in claims:
                    out.write(f"     {name}: {_relative(claims[name], result['at'])}\n")
            if which == "wpt" and "aud" in claims and isinstance(claims["aud"], str):
                normalized = normalize_uri(claims["aud"])
                match = "matches" if normalized in [normalize_uri(a) for a in result["expected_aud"]] else "does NOT match"
                out.write(f"     aud {claims['aud']!r} {match} the expected target\n")


# --- the other commands ------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    if args.issuer:
        try:
            issuer = DevIssuer(args.issuer, args.alg, kid=args.kid)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        data = {"trust_domain": issuer.trust_domain, "kid": issuer.kid, "alg": issuer.key.alg,
                "key": issuer.key.key.as_dict(private=True)}
        what = f"dev issuer of {issuer.trust_domain} (kid {issuer.kid})"
    else:
        key = SigningKey.generate(args.alg)
        data = dict(key.key.as_dict(private=True), alg=key.alg)
        data["kid"] = args.kid or key.key.thumbprint()
        what = f"workload key (kid {data['kid']})"
    _write_private(args.output, data, args.force)
    out.write(f"wrote {args.output}: {args.alg} {what}, mode 0600\n")
    return 0


def cmd_jwks(args: argparse.Namespace, out: TextIO) -> int:
    keys = []
    for path in args.key_file:
        key, issuer = load_key_file(path)
        members: dict[str, Any] = {"use": "sig"}
        kid = issuer.kid if issuer else _read_json(path).get("kid")
        if kid:
            members["kid"] = kid
        keys.append(key.public_jwk(**members))
    out.write(json.dumps({"keys": keys}, indent=2) + "\n")
    return 0


def cmd_mint(args: argparse.Namespace, out: TextIO) -> int:
    key, _ = load_key_file(args.key)
    if args.wit:
        wit = args.wit
    else:
        if not args.issuer or not args.sub:
            raise UsageError("give --issuer and --sub to issue a WIT, or --wit to reuse one")
        _, issuer = load_key_file(args.issuer)
        if issuer is None:
            raise UsageError(f"{args.issuer} is not a dev issuer file (make one with keygen --issuer DOMAIN)")
        try:
            wit = issuer.issue_wit(args.sub, key, lifetime=args.wit_lifetime)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.bearer is not None and args.profile == "wpt-02":
        raise UsageError("under wpt-02 the WPT travels in Authorization: there is no bearer token to bind")
    others = {}
    for item in args.oth:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UsageError(f"--oth takes NAME=VALUE, got {item!r}")
        others[name] = value
    proof = mint_wpt(key, wit, args.aud, lifetime=args.lifetime, bearer=args.bearer, txn_token=args.txn_token,
                     other_tokens=others or None)
    headers = [("Workload-Identity-Token", wit)]
    headers.append(("Authorization", f"WPT {proof}") if args.profile == "wpt-02" else ("Workload-Proof-Token", proof))
    if args.bearer is not None:
        headers.append(("Authorization", f"Bearer {args.bearer}"))
    if args.txn_token is not None:
        headers.append(("Txn-Token", args.txn_token))
    headers += list(others.items())
    if args.curl:
        words = ["curl"] + [w for name, value in headers for w in ("-H", shlex.quote(f"{name}: {value}"))]
        out.write(" ".join(words + [shlex.quote(args.aud)]) + "\n")
    else:
        out.write("".join(f"{name}: {value}\n" for name, value in headers))
    return 0


async def _check_config(settings: Settings) -> dict[str, Any]:
    verifier = settings.verifier()
    report: dict[str, Any] = {"settings": settings.describe(), "unknown_variables": list(settings.unknown)}
    domains: dict[str, Any] = {}
    for domain in sorted(verifier.anchors.trust_domains):
        sources = []
        for source in verifier.anchors.sources(domain):
            entry: dict[str, Any] = {"type": type(source).__name__}
            if isinstance(source, JWKSFile):
                entry["path"] = str(source.path)
            elif isinstance(source, RemoteJWKS):
                entry["url"] = source.url
            try:
                keys = (await source.keys()).keys
            except Exception as exc:
                entry.update(ok=False, error=type(exc).__name__)
            else:
                entry.update(ok=bool(keys), keys=[{"kid": k.kid, "kty": k.jwk.get("kty"), "alg": k.jwk.get("alg")} for k in keys])
            sources.append(entry)
        domains[domain] = sources
    report["trust_domains"] = domains
    readiness = await Readiness(verifier, timeout=settings.jwks_timeout + 1).run()
    report["replay_store"] = readiness["replay_store"]
    report["ready"] = readiness["ready"]
    close = getattr(verifier.replay_cache, "aclose", None)
    if close is not None:
        await close()
    return report


def cmd_check_config(args: argparse.Namespace, out: TextIO) -> int:
    try:
        settings = Settings.from_env()
        report = asyncio.run(_check_config(settings))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
        return 0 if report["ready"] else 1
    verdict = "READY" if report["ready"] else "NOT READY"
    out.write(f"{verdict}  (what a service started now with this environment would use)\n\n")
    for name, value in report["settings"].items():
        out.write(f"  {name:<20} {json.dumps(value)}\n")
    for name in report["unknown_variables"]:
        out.write(f"  warning: {name} is not a wimse-wpt variable (known: see wimse-wpt check-config --help)\n")
    out.write("\ntrust domains\n")
    for domain, sources in report["trust_domains"].items():
        for entry in sources:
            where = entry.get("url") or entry.get("path") or "inline"
            if entry["ok"]:
                kids = ", ".join(f"{k['kid'] or '(no kid)'} {k['alg'] or k['kty']}" for k in entry["keys"])
                out.write(f"  ok    {domain}: {entry['type']} {where}: {len(entry['keys'])} key(s): {kids}\n")
            else:
                out.write(f"  FAIL  {domain}: {entry['type']} {where}: no keys ({entry.get('error', 'empty')})\n")
    store = report["replay_store"]
    state = "ok  " if store["ok"] else "FAIL"
    if store.get("checked"):
        checked = ""
    elif report["settings"]["replay_store"] == "memory":
        checked = " (in-process, nothing to reach)"
    else:
        checked = " (not checked: this store has no ping() or check())"
    error = f" {store['error']}" if "error" in store else ""
    out.write(f"\nreplay store\n  {state}  {report['settings']['replay_store']}{checked}{error}\n")
    return 0 if report["ready"] else 1


# --- argument parsing --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wimse-wpt", description="Workload Proof Tokens (WIMSE): inspect, keys, dev tokens, configuration.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    inspect = commands.add_parser(
        "inspect", help="explain, check by check, why a request's WIT and WPT pass or fail",
        description="Verify a WIT/WPT pair with the real verifier at a chosen time and explain the verdict. "
        "Reads a request's header lines (optionally with its request line) on standard input unless "
        "--wit/--wpt/-H are given. Exit 0 when it passes, 1 when refused, 2 on a usage error.",
    )
    inspect.add_argument("--wit", help="the Workload-Identity-Token")
    inspect.add_argument("--wpt", help="the Workload Proof Token (sent per --profile)")
    inspect.add_argument("--bearer", help="a bearer token sent in Authorization (wpt-01: bound by ath)")
    inspect.add_argument(
        "-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="another header field (repeatable)"
    )
    inspect.add_argument("--anchors", action="append", default=[], metavar="SOURCE",
                         help="DOMAIN=JWKS-file|JWKS-URL|inline-JSON, or a trust anchors JSON file (repeatable); "
                         "default: WIMSE_TRUST_ANCHORS")
    inspect.add_argument(
        "--origin", action="append", default=[], help="an origin of the service (repeatable); default: WIMSE_ORIGINS"
    )
    inspect.add_argument("--path", help="the request path (default: from the request line)")
    inspect.add_argument("--method", help="the request method (default: from the request line, else GET)")
    inspect.add_argument("--profile", choices=PROFILES, help="default: WIMSE_PROFILE, else guessed from the headers")
    inspect.add_argument("--at", type=parse_time, help="verify at this time: epoch seconds or ISO 8601 (default: now)")
    inspect.add_argument("--oth-header", action="append", default=[], metavar="NAME", help="a header oth may bind (repeatable)")
    inspect.add_argument("--audience", action="append", default=[], metavar="URI", help="an accepted aud alias (repeatable)")
    inspect.add_argument("--leeway", type=float, default=0.0, help="seconds of clock skew tolerated (default 0)")
    inspect.add_argument("--max-wpt-lifetime", type=float, default=300.0, help="seconds (default 300)")
    inspect.add_argument("--max-wit-lifetime", type=float, default=86400.0, help="seconds (default 86400)")
    inspect.add_argument("--allow-insecure-jwks", action="store_true", help="allow http:// JWKS URLs to loopback hosts")
    inspect.add_argument("--json", action="store_true", help="print the verdict as JSON")

    keygen = commands.add_parser("keygen", help="make a workload key (private JWK) or a dev issuer file, mode 0600")
    keygen.add_argument("-o", "--output", required=True, help="file to create")
    keygen.add_argument("--alg", default="ES256", choices=sorted(ALGORITHMS), help="default ES256")
    keygen.add_argument("--kid", help="key id (default: a workload key's thumbprint, a random id for an issuer)")
    keygen.add_argument("--issuer", metavar="TRUST_DOMAIN", help="make a dev issuer for this trust domain instead")
    keygen.add_argument("--force", action="store_true", help="replace an existing file")

    jwks = commands.add_parser("jwks", help="print the public JWKS of key files (what a verifier trusts)")
    jwks.add_argument("key_file", nargs="+")

    mint = commands.add_parser("mint", help="mint a dev WIT and WPT, printed as header lines for curl -H @file")
    mint.add_argument("--key", required=True, help="the workload's key file")
    mint.add_argument("--issuer", help="a dev issuer file (keygen --issuer) to issue the WIT")
    mint.add_argument("--sub", help="the workload identifier (wimse://DOMAIN/... or spiffe://DOMAIN/...)")
    mint.add_argument("--wit", help="reuse this WIT instead of issuing one")
    mint.add_argument("--aud", required=True, help="the target URI: https://host/path")
    mint.add_argument("--profile", choices=PROFILES, default="wpt-01")
    mint.add_argument("--lifetime", type=float, default=60, help="WPT lifetime in seconds (default 60)")
    mint.add_argument("--wit-lifetime", type=float, default=3600, help="WIT lifetime in seconds (default 3600)")
    mint.add_argument("--bearer", help="bind this bearer token (ath); it is printed as Authorization: Bearer")
    mint.add_argument("--txn-token", help="bind this Txn-Token (tth)")
    mint.add_argument("--oth", action="append", default=[], metavar="NAME=VALUE", help="bind another token header (repeatable)")
    mint.add_argument("--curl", action="store_true", help="print a curl command line instead of header lines")

    check = commands.add_parser(
        "check-config", help="load settings and trust anchors from WIMSE_* and report what a service would use",
        description="Reads every WIMSE_* variable, fetches remote JWKS once, pings the replay store, "
        "starts nothing. Exit 0 when ready, 1 when something is unavailable, 2 on a configuration error. "
        "Variables: " + "; ".join(f"{k}: {v}" for k, v in VARIABLES.items()),
    )
    check.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """The ``wimse-wpt`` command; returns the exit code."""
    out = stdout or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        if args.command == "inspect":
            result = inspect_request(args, stdin or sys.stdin)
            if args.json:
                out.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
            else:
                print_inspection(result, out)
            return 0 if result["result"] == "pass" else 1
        if args.command == "keygen":
            return cmd_keygen(args, out)
        if args.command == "jwks":
            return cmd_jwks(args, out)
        if args.command == "mint":
            return cmd_mint(args, out)
        return cmd_check_config(args, out)
    except UsageError as exc:
        sys.stderr.write(f"wimse-wpt: {exc}\n")
        return 2
    except SystemExit as exc:  # --help, and argparse's own exits
        return int(exc.code) if isinstance(exc.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
