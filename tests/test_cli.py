"""The wimse-wpt command: inspect explains the real verifier's verdict check by check, the
key and token commands make what a dev setup needs, check-config reports without starting."""

from __future__ import annotations

import io
import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from wimse_wpt import DevIssuer, SigningKey
from wimse_wpt.checks import CHECKS
from wimse_wpt.cli import checklist, main, parse_request, parse_time

from .conftest import draft_examples
from .servers import ROOT, serve

DATA = draft_examples()
VECTORS = {v["name"]: v for v in DATA["vectors"]}
LAST_VALID = DATA["valid_at"]["until_exclusive"] - 1
ORIGIN = DATA["target_uri"].rsplit("/", 1)[0]
ANCHOR = "example.com=" + json.dumps({"keys": [DATA["keys"]["issuer_public_jwk"]]})
VERIFIER_CHECKS = [c.name for c in CHECKS if c.by_verifier and c.name != "internal"]


def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, stdin=io.StringIO(stdin), stdout=out)
    return code, out.getvalue()


def request_text(vector: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    fields = headers if headers is not None else vector["headers"]
    return f"{vector['method']} {vector['path']} HTTP/1.1\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()) + "\n{}"


def inspect(
    vector: dict[str, Any], *extra: str, headers: dict[str, str] | None = None, at: float = LAST_VALID
) -> tuple[int, dict[str, Any]]:
    argv = ["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--at", str(at), "--json", *extra]
    if "oth" in vector["name"]:
        argv += ["--oth-header", "x-custom-token"]
    code, out = run(argv, request_text(vector, headers))
    return code, json.loads(out)


def states(result: dict[str, Any]) -> dict[str, str]:
    return {row["check"]: row["state"] for row in result["checks"]}


def tamper(token: str, part: int) -> str:
    """Change one character of one part of a compact JWS (0 header, 1 claims, 2 signature)."""
    parts = token.split(".")
    middle = len(parts[part]) // 2
    char = parts[part][middle]
    parts[part] = parts[part][:middle] + ("A" if char != "A" else "B") + parts[part][middle + 1 :]
    return ".".join(parts)


# --- inspect on the working group's examples ------------------------------------------------


@pytest.mark.parametrize("name", list(VECTORS))
def test_inspect_explains_an_accept_of_each_example_inside_its_validity(name: str) -> None:
    code, result = inspect(VECTORS[name])
    assert code == 0
    assert result["result"] == "pass" and result["workload"] == "wimse://example.com/specific-workload"
    assert result["profile"] == name[:6]  # guessed from the headers: each example is read under its own profile
    assert all(states(result)[check] == "passed" for check in VERIFIER_CHECKS)
    assert states(result)["route-allow"] == "not checked"
    assert result["wit"]["claims"]["sub"] == "wimse://example.com/specific-workload"
    assert result["wpt"]["claims"]["aud"] == DATA["target_uri"]


def test_inspect_human_output_of_an_accept() -> None:
    vector = VECTORS["wpt-02-authorization"]
    argv = ["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--at", str(LAST_VALID), "--profile", "wpt-02"]
    code, out = run(argv, request_text(vector))
    assert code == 0
    assert out.startswith("PASS  wimse://example.com/specific-workload (trust domain example.com)")
    assert "  ok    wpt-signature" in out and "matches the expected target" in out
    assert "profile   wpt-02\n" in out  # given, not guessed


def test_inspect_at_an_iso_time_and_the_token_arguments() -> None:
    vector = VECTORS["wpt-02-ed25519-alg"]
    wit = vector["headers"]["Workload-Identity-Token"]
    wpt = vector["headers"]["Authorization"].split(" ", 1)[1]
    at = "2025-04-24T15:53:35Z"
    assert parse_time(at) == LAST_VALID
    code, out = run(
        [
            "inspect",
            "--anchors",
            ANCHOR,
            "--origin",
            ORIGIN,
            "--at",
            at,
            "--profile",
            "wpt-02",
            "--wit",
            wit,
            "--wpt",
            wpt,
            "--path",
            "/path",
            "--method",
            "POST",
        ]
    )
    assert code == 0, out


@pytest.mark.parametrize(
    ("part", "token", "failing"),
    [
        (2, "Workload-Proof-Token", "wpt-signature"),
        (2, "Workload-Identity-Token", "wit-signature"),
    ],
)
def test_inspect_names_the_check_a_tampered_token_fails(part: int, token: str, failing: str) -> None:
    vector = VECTORS["wpt-01-bearer"]
    headers = dict(vector["headers"], **{token: tamper(vector["headers"][token], part)})
    code, result = inspect(vector, headers=headers)
    assert code == 1 and result["result"] == "fail" and result["code"] == failing
    order = [row["check"] for row in result["checks"]]
    index = order.index(failing)
    assert states(result)[failing] == "failed"
    assert all(states(result)[c] == "passed" for c in order[:index] if c in VERIFIER_CHECKS)
    assert all(states(result)[c] == "not reached" for c in order[index + 1 :])


def test_inspect_tampered_claims_change_the_verdict_and_human_output_points_at_it() -> None:
    vector = VECTORS["wpt-01-bearer"]
    wit = vector["headers"]["Workload-Identity-Token"]
    header, claims, signature = wit.split(".")
    decoded = json.loads(__import__("base64").urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["sub"] = "wimse://example.com/admin"
    forged = ".".join(
        [header, __import__("base64").urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode(), signature]
    )
    argv = ["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--at", str(LAST_VALID)]
    code, out = run(argv, request_text(vector, dict(vector["headers"], **{"Workload-Identity-Token": forged})))
    assert code == 1
    assert out.startswith("FAIL  wit-signature (400)")
    assert "  FAIL  wit-signature" in out and "<- wit-signature" in out
    assert "  --    wpt-field" in out  # not reached
    assert '"sub": "wimse://example.com/admin"' in out  # the decoded (forged) claims are shown


def test_inspect_after_the_examples_expired_names_the_validity_check() -> None:
    code, result = inspect(VECTORS["wpt-02-authorization"], at=DATA["valid_at"]["until_exclusive"])
    assert code == 1 and result["code"] == "wpt-expired"
    assert states(result)["wpt-validity"] == "failed" and states(result)["wit-validity"] == "passed"


def test_inspect_a_wpt_02_proof_against_a_wpt_01_service() -> None:
    code, result = inspect(VECTORS["wpt-02-authorization"], "--profile", "wpt-01")
    assert code == 1 and result["code"] == "wpt-missing" and states(result)["wpt-field"] == "failed"
    assert result["workload"] == "wimse://example.com/specific-workload"  # the WIT had verified


def test_inspect_another_origin_fails_the_audience_check() -> None:
    vector = VECTORS["wpt-01-oth"]
    argv = [
        "inspect",
        "--anchors",
        ANCHOR,
        "--origin",
        "https://other.example.com",
        "--at",
        str(LAST_VALID),
        "--oth-header",
        "x-custom-token",
    ]
    code, out = run(argv, request_text(vector))
    assert code == 1 and "FAIL  wpt-audience" in out
    assert "does NOT match the expected target" in out and "https://other.example.com/path" in out


def test_inspect_never_logs_a_token(caplog: pytest.LogCaptureFixture) -> None:
    vector = VECTORS["wpt-01-bearer"]
    with caplog.at_level(logging.DEBUG):
        inspect(
            vector,
            headers=dict(vector["headers"], **{"Workload-Proof-Token": tamper(vector["headers"]["Workload-Proof-Token"], 2)}),
        )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in vector["headers"].values():
        assert value.split(" ")[-1][-30:] not in logged


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["inspect", "--anchors", ANCHOR, "--path", "/p", "--wit", "a.b.c", "--wpt", "a.b.c"], "", "give --origin"),
        (["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--wit", "a.b.c", "--wpt", "a.b.c"], "", "give --path"),
        (["inspect", "--anchors", ANCHOR, "--origin", ORIGIN], "", "no header lines"),
        (["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--path", "/"], "this is not a header\n", "not a header line"),
        (["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--at", "yesterday"], "", "ISO 8601"),
        (
            ["inspect", "--anchors", "example.com=/no/such/jwks.json", "--origin", ORIGIN, "--path", "/", "--wit", "x"],
            "",
            "no/such",
        ),
        (["inspect", "--origin", "ftp://x", "--anchors", ANCHOR, "--path", "/", "--wit", "x"], "", "origin"),
        (["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--path", "/"], "-H 'Workload-Identity-Token: x\n", "unbalanced"),
        (["frobnicate"], "", "invalid choice"),
        ([], "", "required"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    argv: list[str], stdin: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WIMSE_ORIGINS", "WIMSE_TRUST_ANCHORS", "WIMSE_DEV_ISSUER", "WIMSE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    code, _ = run(argv, stdin)
    assert code == 2
    assert message in capsys.readouterr().err


def test_inspect_without_anchors_takes_them_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WIMSE_DEV_ISSUER", raising=False)
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"example.com": {"keys": [DATA["keys"]["issuer_public_jwk"]]}}))
    monkeypatch.setenv("WIMSE_TRUST_ANCHORS", str(anchors))
    monkeypatch.setenv("WIMSE_ORIGINS", ORIGIN)
    code, _ = run(["inspect", "--at", str(LAST_VALID)], request_text(VECTORS["wpt-01-bearer"]))
    assert code == 0


def test_checklist_states() -> None:
    rows = {r["check"]: r["state"] for r in checklist("wpt-wth")}
    assert rows["wit-signature"] == "passed" and rows["wpt-wth"] == "failed" and rows["replay"] == "not reached"
    assert rows["request-path"] == "not checked" and "internal" not in rows
    internal = {r["check"]: r["state"] for r in checklist("internal-error")}
    assert internal["internal"] == "failed" and internal["wit-signature"] == "unknown"
    forbidden = {r["check"]: r["state"] for r in checklist("workload-forbidden")}
    assert forbidden["replay"] == "passed" and forbidden["route-allow"] == "failed"


def test_parse_request_accepts_pasted_forms() -> None:
    text = "> GET https://api.example.com/orders?x=1 HTTP/1.1\n> Host: api.example.com\n-H 'Txn-Token: abc'\n\nbody: no"
    method, path, headers = parse_request(text)
    assert (method, path) == ("GET", "/orders")
    assert headers == [("Host", "api.example.com"), ("Txn-Token", "abc")]


# --- keygen, jwks, mint: a dev setup end to end ---------------------------------------------------


def test_keygen_jwks_mint_and_inspect_round_trip(tmp_path: Path) -> None:
    issuer_file, key_file = tmp_path / "issuer.json", tmp_path / "workload.jwk"
    assert run(["keygen", "--issuer", "example.com", "-o", str(issuer_file)])[0] == 0
    assert run(["keygen", "--alg", "Ed25519", "-o", str(key_file)])[0] == 0
    for path in (issuer_file, key_file):
        assert path.stat().st_mode & 0o777 == 0o600
    assert "d" in json.loads(key_file.read_text()) and json.loads(key_file.read_text())["alg"] == "Ed25519"
    code, jwks = run(["jwks", str(issuer_file)])
    assert code == 0 and '"d"' not in jwks
    public = json.loads(jwks)
    assert public["keys"][0]["kid"] == DevIssuer.load(issuer_file).kid and public["keys"][0]["use"] == "sig"
    (tmp_path / "jwks.json").write_text(jwks)

    code, headers = run(
        [
            "mint",
            "--issuer",
            str(issuer_file),
            "--key",
            str(key_file),
            "--sub",
            "wimse://example.com/me",
            "--aud",
            "https://api.example.com/orders",
            "--txn-token",
            "txn-1",
        ]
    )
    assert code == 0
    names = [line.split(":", 1)[0] for line in headers.splitlines()]
    assert names == ["Workload-Identity-Token", "Workload-Proof-Token", "Txn-Token"]
    code, out = run(
        [
            "inspect",
            "--anchors",
            f"example.com={tmp_path / 'jwks.json'}",
            "--origin",
            "https://api.example.com",
            "--path",
            "/orders",
        ],
        headers,
    )
    assert code == 0, out
    assert out.startswith("PASS  wimse://example.com/me")


def test_mint_wpt_02_and_curl_output(tmp_path: Path) -> None:
    issuer_file, key_file = tmp_path / "issuer.json", tmp_path / "workload.jwk"
    run(["keygen", "--issuer", "example.com", "-o", str(issuer_file)])
    run(["keygen", "-o", str(key_file)])
    code, line = run(
        [
            "mint",
            "--issuer",
            str(issuer_file),
            "--key",
            str(key_file),
            "--sub",
            "wimse://example.com/me",
            "--aud",
            "https://api.example.com/orders",
            "--profile",
            "wpt-02",
            "--curl",
        ]
    )
    assert code == 0
    words = shlex.split(line)
    assert words[0] == "curl" and words[-1] == "https://api.example.com/orders"
    headers = [words[i + 1] for i, w in enumerate(words) if w == "-H"]
    assert headers[0].startswith("Workload-Identity-Token: ") and headers[1].startswith("Authorization: WPT ")
    # A pasted curl command's -H lines are read by inspect too.
    jwks = tmp_path / "jwks.json"
    jwks.write_text(run(["jwks", str(issuer_file)])[1])
    stdin = "\n".join(f"-H {shlex.quote(h)}" for h in headers)
    code, out = run(
        ["inspect", "--anchors", f"example.com={jwks}", "--origin", "https://api.example.com", "--path", "/orders"], stdin
    )
    assert code == 0 and "wpt-02 (guessed from the headers" in out


def test_mint_reuses_a_wit_and_binds_a_bearer(tmp_path: Path) -> None:
    issuer = DevIssuer("example.com")
    key = SigningKey.generate("ES256")
    key_file = tmp_path / "k.jwk"
    key_file.write_text(json.dumps(dict(key.key.as_dict(private=True), alg="ES256")))
    wit = issuer.issue_wit("wimse://example.com/me", key)
    code, out = run(["mint", "--key", str(key_file), "--wit", wit, "--aud", "https://api.example.com/x", "--bearer", "tok"])
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["Workload-Identity-Token"] == wit and lines["Authorization"] == "Bearer tok"
    code, _ = run(["mint", "--key", str(key_file), "--wit", wit, "--aud", "https://x/", "--bearer", "t", "--profile", "wpt-02"])
    assert code == 2
    code, _ = run(["mint", "--key", str(key_file), "--aud", "https://x/"])
    assert code == 2  # neither --issuer/--sub nor --wit
    code, _ = run(
        ["mint", "--key", str(key_file), "--issuer", str(key_file), "--sub", "wimse://example.com/me", "--aud", "https://x/"]
    )
    assert code == 2  # a workload key is not an issuer


def test_keygen_never_overwrites_without_force_and_keeps_0600(tmp_path: Path) -> None:
    path = tmp_path / "key.jwk"
    path.write_text("precious")
    path.chmod(0o644)
    assert run(["keygen", "-o", str(path)])[0] == 2
    assert path.read_text() == "precious"
    assert run(["keygen", "-o", str(path), "--force"])[0] == 0
    assert path.stat().st_mode & 0o777 == 0o600 and "kty" in json.loads(path.read_text())


def test_jwks_of_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    assert run(["jwks", str(path)])[0] == 2
    assert run(["jwks", str(tmp_path / "absent.json")])[0] == 2


# --- check-config -----------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in [n for n in os.environ if n.startswith("WIMSE_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_check_config_fetches_remote_jwks_once_and_reports(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    remote_issuer = DevIssuer("partner.example", kid="p1")
    hits: list[int] = []

    async def jwks(request: Any) -> JSONResponse:
        hits.append(1)
        return JSONResponse(remote_issuer.jwks)

    with serve(Starlette(routes=[Route("/jwks.json", jwks)])) as origin:
        anchors = tmp_path / "anchors.json"
        anchors.write_text(
            json.dumps({"example.com": DevIssuer("example.com", kid="e1").jwks, "partner.example": origin + "/jwks.json"})
        )
        clean_env.setenv("WIMSE_TRUST_ANCHORS", str(anchors))
        clean_env.setenv("WIMSE_ALLOW_INSECURE_JWKS", "1")
        clean_env.setenv("WIMSE_MODE", "report-only")
        clean_env.setenv("WIMSE_PROFIL", "wpt-02")
        code, out = run(["check-config"])
        assert code == 0, out
        assert len(hits) == 1
        assert out.startswith("READY")
        assert "ok    partner.example: RemoteJWKS " + origin + "/jwks.json: 1 key(s): p1 ES256" in out
        assert "ok    example.com: StaticKeys inline: 1 key(s): e1 ES256" in out
        assert '"report-only"' in out and "warning: WIMSE_PROFIL is not a wimse-wpt variable" in out
        code, out = run(["check-config", "--json"])
        report = json.loads(out)
        assert code == 0 and report["ready"] is True and report["settings"]["mode"] == "report-only"
        assert report["trust_domains"]["partner.example"][0]["keys"] == [{"kid": "p1", "kty": "EC", "alg": "ES256"}]


def test_check_config_with_an_unreachable_jwks_is_not_ready(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"partner.example": "http://127.0.0.1:9/jwks.json"}))
    clean_env.setenv("WIMSE_TRUST_ANCHORS", str(anchors))
    clean_env.setenv("WIMSE_ALLOW_INSECURE_JWKS", "1")
    clean_env.setenv("WIMSE_JWKS_TIMEOUT", "1")
    code, out = run(["check-config"])
    assert code == 1
    assert out.startswith("NOT READY") and "FAIL  partner.example: RemoteJWKS" in out


def test_check_config_bad_environment_exits_2_naming_the_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(["check-config"])[0] == 2
    assert "WIMSE_TRUST_ANCHORS: not set" in capsys.readouterr().err
    clean_env.setenv("WIMSE_DEV_ISSUER", str(tmp_path / "issuer.json"))
    clean_env.setenv("WIMSE_MODE", "enforcing")
    assert run(["check-config"])[0] == 2
    assert "WIMSE_MODE: must be one of enforce, report-only, optional" in capsys.readouterr().err
    clean_env.delenv("WIMSE_MODE")
    (tmp_path / "a-file").write_text("")
    clean_env.setenv("WIMSE_DEV_ISSUER", str(tmp_path / "a-file" / "issuer.json"))
    assert run(["check-config"])[0] == 2
    assert "WIMSE_DEV_ISSUER: cannot use" in capsys.readouterr().err


def test_check_config_with_a_dev_issuer(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("WIMSE_DEV_ISSUER", str(tmp_path / "issuer.json"))
    code, out = run(["check-config", "--json"])
    report = json.loads(out)
    assert code == 0 and list(report["trust_domains"]) == ["example.com"]
    assert report["replay_store"] == {"ok": True, "checked": False}


# --- as a program ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["wimse_wpt.cli", "wimse_wpt"])
def test_runs_as_a_module_with_help(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0
    for command in ("inspect", "keygen", "jwks", "mint", "check-config"):
        assert command in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", module, "inspect", "--profile", "wpt-9"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_keygen_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("someone else's file")
    link = tmp_path / "key.jwk"
    link.symlink_to(target)
    assert run(["keygen", "-o", str(link), "--force"])[0] == 2
    assert target.read_text() == "someone else's file"


@pytest.mark.parametrize(
    ("vector", "extra", "code", "hint"),
    [
        ("wpt-02-authorization", ["--profile", "wpt-01"], "wpt-missing", "carries a wpt-02 proof (Authorization: WPT)"),
        ("wpt-01-bearer", ["--profile", "wpt-02"], "wpt-missing", "carries a wpt-01 proof (Workload-Proof-Token)"),
        ("wpt-01-bearer", ["--path", "/other"], "wpt-audience", "aud is 'https://workload.example.com/path'; expected one of"),
        ("wpt-01-bearer", ["--at", str(DATA["valid_at"]["from"])], "wpt-lifetime", "--max-wpt-lifetime"),
    ],
)
def test_inspect_hints_at_what_to_fix(vector: str, extra: list[str], code: str, hint: str) -> None:
    result_code, result = inspect(VECTORS[vector], *extra)
    assert result_code == 1 and result["code"] == code
    assert hint in result["hint"]


def test_inspect_hints_for_oth_and_unknown_keys() -> None:
    vector = VECTORS["wpt-01-oth"]
    argv = ["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--at", str(LAST_VALID), "--json"]
    code, out = run(argv, request_text(vector))
    assert code == 1 and "oth binds x-custom-token; give each with --oth-header" in json.loads(out)["hint"]
    other = "example.com=" + json.dumps(DevIssuer("example.com", kid="another").jwks)
    code, out = run(["inspect", "--anchors", other, "--origin", ORIGIN, "--at", str(LAST_VALID)], request_text(vector))
    assert code == 1 and "hint  the WIT names kid 'June 5'" in out


def test_inspect_with_a_remote_jwks_anchor() -> None:
    async def jwks(request: Any) -> JSONResponse:
        return JSONResponse({"keys": [DATA["keys"]["issuer_public_jwk"]]})

    with serve(Starlette(routes=[Route("/jwks.json", jwks)])) as origin:
        argv = [
            "inspect",
            "--anchors",
            f"example.com={origin}/jwks.json",
            "--allow-insecure-jwks",
            "--origin",
            ORIGIN,
            "--at",
            str(LAST_VALID),
        ]
        code, out = run(argv, request_text(VECTORS["wpt-01-bearer"]))
        assert code == 0, out
        code, _ = run(argv[:3] + argv[4:], request_text(VECTORS["wpt-01-bearer"]))
        assert code == 2  # http without --allow-insecure-jwks


def test_check_config_says_when_a_remote_store_was_not_pinged(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from wimse_wpt import RedisReplayCache

    clean_env.setenv("WIMSE_DEV_ISSUER", str(tmp_path / "issuer.json"))
    clean_env.setenv("WIMSE_REPLAY_STORE", "redis://:secret@127.0.0.1:1/0")
    code, out = run(["check-config"])
    assert "secret" not in out and "redis://***@127.0.0.1:1/0" in out
    if not any(callable(getattr(RedisReplayCache, name, None)) for name in ("ping", "check")):
        assert code == 0 and "not checked: this store has no ping() or check()" in out
    else:  # a store that can be asked is asked: nothing listens on port 1
        assert code == 1 and "FAIL  redis://***@127.0.0.1:1/0" in out


@pytest.mark.parametrize(
    "wit",
    ["a.b.c", "é.ü.x", "..", "x" * 100, "W1tbW1tbW1tb" * 500 + ".e30.sig", "eyJhbGciOiJFUzI1NiJ9.W10.sig"],
)
def test_inspect_of_garbage_is_a_refusal_never_a_traceback(wit: str) -> None:
    argv = ["inspect", "--anchors", ANCHOR, "--origin", ORIGIN, "--path", "/", "--wit", wit, "--wpt", wit, "--json"]
    code, out = run(argv)
    assert code == 1
    result = json.loads(out)
    assert result["code"].startswith("wit-") and result["checks"]
