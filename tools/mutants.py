"""`make mutants`: one-line mutants of the security checks, each run against its tests.

Every mutant names a file, an exact fragment of one line of it (which must occur exactly once)
and its replacement (a few pair two lines, to break two checks at once). Each is applied in
turn to a temporary copy of the tree (src/, tests/, pyproject.toml; never the working tree),
and the listed tests run with ``-x -q`` there. A mutant the tests fail on is killed; one they
pass on survived: some check could break and nothing would notice. A fragment no longer found
is reported as stale (the code moved on: update the list). Outside ``make test`` and CI: it
takes minutes.

    python tools/mutants.py              # all mutants
    python tools/mutants.py -k replay    # those whose name contains "replay"
    python tools/mutants.py --list       # names only

The list grows with each check added: a new check gets its mutant here, and a test that kills it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERIFIER_TESTS = ("tests/test_wit.py", "tests/test_wpt.py", "tests/test_authorization.py", "tests/test_boundary.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to src/wimse_wpt/
    original: str
    replacement: str
    tests: tuple[str, ...] = VERIFIER_TESTS
    also: tuple[tuple[str, str], ...] = ()  # more (original, replacement) lines, same file

    def edits(self) -> tuple[tuple[str, str], ...]:
        return ((self.original, self.replacement), *self.also)


M = Mutant
MUTANTS: list[Mutant] = [
    # --- issue 13's survivors (mutation testing of main) ----------------------------------------
    M("nbf-non-numeric-accepted", "claims.py", "if nbf is None or now + leeway < nbf:",
      "if nbf is not None and now + leeway < nbf:"),
    M("nbf-check-removed", "claims.py", 'if "nbf" in claims:', "if False:"),
    M(
        "percent-reserved-decoded",
        "wpt.py",
        'out.append(decoded if decoded in _UNRESERVED else "%" + pair.upper())',
        'out.append(decoded if decoded in _UNRESERVED or decoded in "/?#%" else "%" + pair.upper())',
    ),
    M("b64-alone-accepted", "tokens.py", 'if "crit" in header or "b64" in header:', 'if "crit" in header:',
      VERIFIER_TESTS + ("tests/test_tokens.py",)),
    M("ecdsa-length-unchecked", "tokens.py", "if len(signature) != 2 * size:", "if False:",
      VERIFIER_TESTS + ("tests/test_tokens.py",)),
    M("jwks-streamed-cap-removed", "anchors.py", "if len(body) > self.max_bytes:", "if False:", ("tests/test_anchors.py",)),
    M("jwks-content-length-cap-removed", "anchors.py", "and int(declared) > self.max_bytes:", "and False:",
      ("tests/test_anchors.py",)),
    M("jwks-both-caps-removed", "anchors.py", "and int(declared) > self.max_bytes:", "and False:",
      ("tests/test_anchors.py",), also=(("if len(body) > self.max_bytes:", "if False:"),)),
    M("cnf-alg-outside-allow-list", "wit.py", "if not isinstance(alg, str) or alg not in self.algorithms:",
      "if not isinstance(alg, str):"),
    # Exact patterns stay exact (for exclusions and route rules alike: one PathPattern serves both).
    M("exact-pattern-as-prefix", "paths.py",
      "            return path == self.base", "            return path.startswith(self.base)",
      ("tests/test_middleware.py", "tests/test_paths.py")),
    M("prefix-pattern-misses-its-own-base", "paths.py",
      'return path.startswith(self.base) or (self.base.endswith("/") and path == self.base[:-1])',
      "return path.startswith(self.base)", ("tests/test_middleware.py", "tests/test_paths.py")),
    M("root-path-without-boundary", "paths.py", 'return path[len(root_path) :] if path[len(root_path)] == "/" else path',
      "return path[len(root_path) :]", ("tests/test_middleware.py", "tests/test_paths.py")),
    # --- numbers and clocks (defects 1, 4, 5) ------------------------------------------------------
    M("numeric-date-int-unbounded", "claims.py", "return float(value) if 0 <= value < MAX_NUMERIC_DATE else None",
      "return float(value) if 0 <= value else None"),
    M("numeric-date-negative-accepted", "claims.py", "return float(value) if 0 <= value < MAX_NUMERIC_DATE else None",
      "return float(value) if value < MAX_NUMERIC_DATE else None"),
    M("numeric-date-float-unbounded", "claims.py", "return value if 0.0 <= value < MAX_NUMERIC_DATE else None",
      "return value if 0.0 <= value else None"),
    M("exp-missing-accepted", "claims.py", "if exp is None:", "if exp is None and False:"),
    M("exp-boundary-off-by-one", "claims.py", "if now >= exp + leeway:", "if now > exp + leeway:"),
    M("lifetime-unchecked", "claims.py", "if exp - now > max_lifetime + leeway:", "if False:"),
    M("replay-ttl-one-leeway", "verifier.py", "exp - now + 3 * self.leeway", "exp - now + self.leeway"),
    M("replay-ttl-two-leeways", "verifier.py", "exp - now + 3 * self.leeway", "exp - now + 2 * self.leeway"),
    M("clock-not-reread-after-key-source", "wit.py", "now = self._clock()", "now = now"),
    M("wit-exp-not-rechecked-after-key-source", "wit.py", 'raise expired("wit")', "pass"),
    M("wpt-exp-not-rechecked-after-replay-store", "verifier.py", "                if now >= exp + self.leeway:",
      "                if False:"),
    M("wit-exp-not-rechecked-after-replay-store", "verifier.py", "                if now >= wit.exp + self.leeway:",
      "                if False:", ("tests/test_attack_h12.py", "tests/test_wpt.py")),
    # --- Authorization (defects 6, 7) --------------------------------------------------------------
    M("authorization-commas-counted", "headers.py", "if len(authorizations) > 1:",
      'if len(authorizations) > 1 or b"," in authorizations[0]:'),
    M("authorization-malformed-accepted", "headers.py", 'raise Reject("authorization-malformed", _MALFORMED)', "pass"),
    M("scheme-tab-separator", "headers.py", 'rb"(" + _TCHAR + rb"++)(?: ++([A-Za-z0-9',
      'rb"(" + _TCHAR + rb"++)(?:[ \\t]++([A-Za-z0-9'),
    M("params-tab-separator", "headers.py", 'rb"(" + _TCHAR + rb"++) ++(?:,', 'rb"(" + _TCHAR + rb"++)[ \\t]++(?:,'),
    M("dpop-not-bound", "headers.py", 'frozenset({b"bearer", b"dpop"})', 'frozenset({b"bearer"})'),
    M("bearer-params-pass-unbound", "headers.py", 'raise Reject("authorization-malformed", f"{credentials.scheme.decode()}',
      'return token, None  # ("authorization-malformed", f"{credentials.scheme.decode()}'),
    M("wpt02-params-accepted", "headers.py",
      'raise Reject("authorization-malformed", "The Authorization field must be WPT and one token.")', 'return b"", None'),
    M("wpt02-other-scheme-accepted", "headers.py", 'if credentials is None or credentials.scheme != b"wpt":',
      "if credentials is None:"),
    M("wit-comma-joined-accepted", "headers.py", 'if len(values) > 1 or b"," in values[0]:', "if len(values) > 1:"),
    M("token-size-unchecked", "headers.py", "if len(token) > max_bytes:", "if False:"),
    # --- the WIT (workload-creds 5.1.4) ------------------------------------------------------------
    M("wit-alg-not-in-allow-list", "wit.py", "if alg not in self.algorithms:", "if False:"),
    M("wit-signature-unchecked", "wit.py", "if not anchor.verify(alg, signing_input, signature):", "if False:"),
    M("wit-trust-domain-unchecked", "wit.py", "if identifier.trust_domain not in self.anchors.trust_domains:", "if False:"),
    M("wit-cache-ignores-key-change", "wit.py", "if wit.anchors_generation != (source.generation if source is not None",
      "if False and (source.generation if source is not None"),
    M("wit-cache-follows-first-source-only", "wit.py",
      "source = sources[0] if self._direct_generation and len(sources) == 1 else None",
      "source = sources[0] if self._direct_generation else None"),
    M("wit-cache-follows-anchors-never", "wit.py",
      "source = sources[0] if self._direct_generation and len(sources) == 1 else None", "source = None",
      also=(("else self.anchors.generation(wit.trust_domain)):", "else wit.anchors_generation):"),)),
    M("wit-cache-ignores-expiry", "wit.py", "if wit is None or now >= wit.exp + self.leeway:", "if wit is None:"),
    M("wit-typ-unchecked", "tokens.py", 'if not is_media_type(header.get("typ"), media_type):', "if False:",
      VERIFIER_TESTS + ("tests/test_tokens.py",)),
    # --- the WPT (wpt 2.1) -------------------------------------------------------------------------
    M("wpt-alg-not-string-equal", "wpt.py", "if alg != wit.alg:", "if False:"),
    M("wpt-signature-unchecked", "wpt.py", "if not wit.key.verify(alg, signing_input, signature):", "if False:"),
    M("wpt-wth-unchecked", "wpt.py", 'if not hash_matches(claims.get("wth"), wit.wth):', "if False:"),
    M("wpt-jti-unchecked", "wpt.py", "if not isinstance(jti, str) or not jti:", "if False:"),
    M("aud-array-of-several", "wpt.py", "if type(aud) is list and len(aud) == 1:", "if type(aud) is list and aud:"),
    M("aud-any-origin-path", "wpt.py", "if target == origin + path:", "if target.startswith(origin):"),
    M("ath-enforced-under-wpt02", "wpt.py", 'if self.profile == "wpt-01":', "if True:"),
    M("ath-unchecked", "wpt.py", 'self._check_binding("ath", claims.get("ath"), access_token, "access token")', "pass"),
    M("oth-unknown-accepted", "wpt.py", "if name not in self.oth_headers:", "if False:"),
    M("hash-not-compared", "claims.py",
      "return isinstance(claim, str) and claim.isascii() and hmac.compare_digest(claim, expected)",
      "return isinstance(claim, str)"),
    M("header-cache-skips-structure", "claims.py",
      "if len(parts) != 3 or not (parts[0] and parts[1] and parts[2]):", "if len(parts) < 3:",
      also=(('parts = token.split(b".", 3) if len(token) <= max_bytes else ()', 'parts = token.split(b".", 3)'),)),
    M("header-verdict-refusal-forgotten", "claims.py", "if type(rest) is str:", "if False:"),
    # (HeaderVerdicts.split's own size check is a second line: every caller caps the field first.)
    M("field-size-checked-after-comma-scan", "headers.py", "if values and len(values[0]) > max_bytes:", "if False:"),
    M("field-fast-path-accepts-several", "headers.py", 'if values and len(values) == 1 and b"," not in values[0]:',
      "if values:"),
    M("json-trailing-data-accepted", "tokens.py", "if end != len(text):", "if end == -1:",
      VERIFIER_TESTS + ("tests/test_tokens.py",)),
    M("json-depth-unbounded", "tokens.py", "            too_deep = _json_depth(raw.decode(\"utf-8\")) > MAX_JSON_DEPTH",
      "            too_deep = False", VERIFIER_TESTS + ("tests/test_tokens.py",)),
    M("json-object-type-unchecked", "tokens.py", "if type(value) is not dict:", "if False:",
      VERIFIER_TESTS + ("tests/test_tokens.py",)),
    M("ecdsa-prehash-wrong", "tokens.py", "digest(message).digest(), algorithm)", "digest(message[:-1]).digest(), algorithm)",
      VERIFIER_TESTS + ("tests/test_tokens.py",)),
    # --- replay -------------------------------------------------------------------------------------
    M("replay-unchecked", "verifier.py", "if not first:", "if False:"),
    M("replay-key-without-jti", "verifier.py", 'key.update(jti.encode("utf-8", "surrogatepass"))', "pass"),
    M("replay-raw-contains-only", "replay.py",
      "if _stored_key(entries, key) and key in entries:", "if _stored_key(entries, key):",
      ("tests/test_replay_quota.py", "tests/test_wpt.py")),
    M("problem-cache-ignores-detail", "verifier.py", "key = (reject.code, reject.detail)", "key = (reject.code, '')"),
    # --- the h12 attack review ---------------------------------------------------------------
    M("excluded-path-keeps-credentials", "middleware.py",
      'scope["headers"] = [field for field in scope["headers"] if not _is_wimse_field(field)]', "pass",
      ("tests/test_attack_h12.py",)),
    M("redirect-keeps-credentials", "client.py", "if aud is not None and aud == target_uri(request.url):", "if True:",
      ("tests/test_attack_h12.py",)),
    M("target-without-leading-slash-clean", "paths.py", 'path[:1] == "/"', "True", ("tests/test_attack_h12.py",)),
    M("sniff-reads-a-tab-as-a-space", "middleware.py", "credentials = parse_authorization(authorizations[0])",
      "credentials = parse_authorization(authorizations[0].replace(b'\\t', b' '))", ("tests/test_attack_h12.py",)),
    M("rule-under-exclusion-accepted", "middleware.py", "if self._is_open(pattern.base):", "if False:",
      ("tests/test_attack_h12.py",)),
    M("dev-issuer-file-unchecked", "devissuer.py", "        _check_private(path)", "        pass", ("tests/test_attack_h12.py",)),
    # --- issue 9: the fast paths of the steady and cold verifications ---------------------------
    M("route-memo-ignores-root-path", "middleware.py", 'key = (scope["path"], raw, scope.get("root_path", ""))',
      'key = (scope["path"], raw, "")', ("tests/test_paths.py",)),
    M("route-memo-ignores-raw-path", "middleware.py", 'key = (scope["path"], raw, scope.get("root_path", ""))',
      'key = (scope["path"], None, scope.get("root_path", ""))', ("tests/test_paths.py",)),
    M("route-memo-unbounded", "middleware.py", "if len(self._routes) >= _ROUTES_KEPT:", "if False:",
      ("tests/test_paths.py",)),
    M("der-high-bit-unpadded", "tokens.py", "if r[0] & 0x80:  # a set high bit", "if False:  # a set high bit",
      ("tests/test_tokens.py", "tests/test_vectors.py")),
    M("libsodium-verdict-inverted", "tokens.py", "return sodium_open(null, null, signed, len(signed), public_bytes) == 0",
      "return sodium_open(null, null, signed, len(signed), public_bytes) != -2", ("tests/test_ed25519_backends.py",)),
    M("workload-of-without-workload", "fastapi.py",
      'raise VerificationError(_refusal(request, "wit-missing", "This route needs a verified workload."))', "pass",
      ("tests/test_middleware.py",)),
]


def copy_tree(dest: Path) -> None:
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    shared = ROOT.parent / "shared"
    if shared.exists():  # the tests find ../shared next to the tree
        (dest.parent / "shared").symlink_to(shared.resolve(), target_is_directory=True)


def run(mutant: Mutant, tree: Path, timeout: float) -> str:
    path = tree / "src" / "wimse_wpt" / mutant.file
    original = mutated = path.read_text()
    for fragment, replacement in mutant.edits():
        if original.count(fragment) != 1:
            return "stale"
        mutated = mutated.replace(fragment, replacement)
    path.write_text(mutated)
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout", "60", *mutant.tests]
    try:
        result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        outcome = "survived" if result.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        outcome = "killed (timeout)"
    finally:
        path.write_text(original)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant (default 600)")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.k in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name:45} {m.file}")
        return 0
    with tempfile.TemporaryDirectory(prefix="wimse-mutants-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        # The unmutated copy must pass, and must import the copy, not the working tree.
        probe = subprocess.run(
            [sys.executable, "-c", "import wimse_wpt; print(wimse_wpt.__file__)"],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree / "src")}, capture_output=True, text=True,
        )
        if not probe.stdout.startswith(str(tree)):
            print(f"the copy does not import its own src/ ({probe.stdout.strip() or probe.stderr.strip()})")
            return 2
        results: dict[str, list[str]] = {}
        for mutant in chosen:
            started = time.monotonic()
            outcome = run(mutant, tree, args.timeout)
            results.setdefault(outcome.split()[0], []).append(mutant.name)
            print(f"{outcome:17} {mutant.name:45} {mutant.file:14} {time.monotonic() - started:5.1f} s", flush=True)
    counts = {outcome: len(results.get(outcome, [])) for outcome in ("killed", "survived", "stale")}
    print(f"\n{counts['killed']} killed, {counts['survived']} survived, {counts['stale']} stale, of {len(chosen)}")
    for outcome in ("survived", "stale"):
        for name in results.get(outcome, []):
            print(f"  {outcome}: {name}")
    return 1 if results.get("survived") or results.get("stale") else 0


if __name__ == "__main__":
    sys.exit(main())
