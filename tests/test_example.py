"""The example service, started as an operator would and pointed at the test's own trust
domain through the environment; and the demo that `make demo` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from wimse_wpt import DevIssuer, SigningKey, WPTAuth, mint_wpt

from .servers import EXAMPLES, ROOT, example_service, free_port

ISSUER = DevIssuer("example.com")
OTHER = DevIssuer("partner.example")


@pytest.fixture(scope="module")
def anchors_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("anchors") / "anchors.json"
    path.write_text(json.dumps({"example.com": ISSUER.jwks, "partner.example": OTHER.jwks}))
    return path


@pytest.fixture(scope="module")
def service(anchors_file: Path) -> Iterator[str]:
    with example_service({"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_OTH_HEADERS": "X-Custom-Token"}) as origin:
        yield origin


def auth(identifier: str = "wimse://example.com/caller", issuer: DevIssuer = ISSUER, **options: object) -> WPTAuth:
    key = SigningKey.generate("ES256")
    return WPTAuth(key, issuer.issue_wit(identifier, key), **options)  # type: ignore[arg-type]


def test_post_path_answers_the_verified_workload(service: str) -> None:
    with httpx.Client(base_url=service, auth=auth()) as client:
        response = client.post("/path", json={"do stuff": "please"})
    assert response.status_code == 200
    assert response.json() == {"workload": "wimse://example.com/caller"}


def test_every_trust_domain_in_the_anchors_file_is_trusted(service: str) -> None:
    with httpx.Client(base_url=service, auth=auth("spiffe://partner.example/ns/a", OTHER)) as client:
        assert client.post("/path").json() == {"workload": "spiffe://partner.example/ns/a"}


def test_healthz_is_open(service: str) -> None:
    assert httpx.get(service + "/healthz").json() == {"status": "ok"}


def test_unsigned_call_refused_with_a_problem(service: str) -> None:
    response = httpx.post(service + "/path")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "wit-missing"


def test_fastapi_dependency_requires_an_identifier_pattern(service: str) -> None:
    with httpx.Client(base_url=service, auth=auth()) as client:
        refused = client.post("/ops")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "workload-forbidden"
    with httpx.Client(base_url=service, auth=auth("wimse://example.com/ops/deploy")) as client:
        assert client.post("/ops").json() == {"workload": "wimse://example.com/ops/deploy"}


def test_starlette_requires_in_a_fastapi_app(service: str) -> None:
    with httpx.Client(base_url=service, auth=auth()) as client:
        assert client.get("/whoami").json()["user"] == "wimse://example.com/caller"


def test_app_never_sees_the_credentials_and_oth_is_bound(service: str) -> None:
    with httpx.Client(base_url=service, auth=auth(oth_headers=["x-custom-token"])) as client:
        body = client.get("/headers", headers={"X-Custom-Token": "abc"}).json()
    assert "workload-identity-token" not in body["headers"]
    assert "workload-proof-token" not in body["headers"]
    assert body["bound"] == ["x-custom-token"]


def test_openapi_documents_the_two_headers(service: str) -> None:
    schema = httpx.get(service + "/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["WorkloadIdentityToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Workload-Identity-Token",
        "description": schemes["WorkloadIdentityToken"]["description"],
    }
    assert schemes["WorkloadProofToken"]["name"] == "Workload-Proof-Token"
    # Both headers together: one requirement object (OpenAPI's "and").
    both = {"WorkloadIdentityToken": [], "WorkloadProofToken": []}
    assert schema["paths"]["/path"]["post"]["security"] == [both]
    assert schema["paths"]["/ops"]["post"]["security"] == [both]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_websocket_on_the_example(service: str) -> None:
    key = SigningKey.generate("ES256")
    wit = ISSUER.issue_wit("wimse://example.com/ws-client", key)
    url = service.replace("http://", "ws://") + "/ws"
    headers = {"Workload-Identity-Token": wit, "Workload-Proof-Token": mint_wpt(key, wit, url)}
    with websockets.sync.client.connect(url, additional_headers=headers) as connection:
        assert json.loads(connection.recv()) == {"workload": "wimse://example.com/ws-client"}
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(url).close()
    assert refused.value.response.status_code == 400


def test_wpt_02_profile_from_the_environment(anchors_file: Path) -> None:
    with example_service({"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_PROFILE": "wpt-02"}) as origin:
        with httpx.Client(base_url=origin, auth=auth(profile="wpt-02")) as client:
            assert client.post("/path").status_code == 200
        refused = httpx.post(origin + "/path")
        wpt_scheme = httpx.get(origin + "/openapi.json").json()["components"]["securitySchemes"]["WorkloadProofToken"]
    assert wpt_scheme["type"] == "http" and wpt_scheme["scheme"] == "WPT"
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "WPT"


def test_bad_configuration_stops_the_service_with_a_clear_message(anchors_file: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import service"],
        cwd=EXAMPLES,
        env={"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_PROFILE": "wpt-9", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "WIMSE_PROFILE: must be one of wpt-01, wpt-02" in result.stderr


def test_demo_shows_one_accepted_and_several_rejected_calls_and_leaves_no_key_behind(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert list(temp.iterdir()) == []  # the demo's issuer key and its folder are gone
    lines = result.stdout.splitlines()
    marks = [line.split()[0] for line in lines if line.strip().startswith(("accepted", "rejected"))]
    assert marks.count("accepted") == 1 and marks.count("rejected") >= 4
    for code in ("wit-missing", "wpt-replayed", "wpt-audience", "wit-expired"):
        assert any(line.strip().startswith("rejected") and code in line for line in lines), code


# --- the development issuer shared through a file ---------------------------------------------


def test_dev_issuer_load_or_create_shares_one_trust_domain_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "issuer.json"
    code = "import sys; from wimse_wpt import DevIssuer; print(DevIssuer.load_or_create(sys.argv[1]).kid)"
    kids = [subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, check=True).stdout
            for _ in range(2)]
    assert kids[0] == kids[1]
    assert path.stat().st_mode & 0o777 == 0o600
    issuer = DevIssuer.load_or_create(path)
    assert issuer.kid == kids[0].strip() and issuer.trust_domain == "example.com"
    assert [p.name for p in tmp_path.iterdir()] == ["issuer.json"]  # no temporary file left behind


def test_dev_issuer_file_keeps_alg_and_trust_domain(tmp_path: Path) -> None:
    path = tmp_path / "issuer.json"
    created = DevIssuer.load_or_create(path, "partner.example", alg="Ed25519")
    loaded = DevIssuer.load_or_create(path)
    assert (loaded.trust_domain, loaded.kid, loaded.key.alg) == ("partner.example", created.kid, "Ed25519")
    key = SigningKey.generate("ES256")
    wit = loaded.issue_wit("wimse://partner.example/a", key)
    # What one process issues, the JWKS the other loaded verifies.
    from wimse_wpt import Verifier

    verifier = Verifier({"partner.example": created.jwks}, ["https://api.example.com"])
    headers = [("workload-identity-token", wit), ("workload-proof-token", mint_wpt(key, wit, "https://api.example.com/x"))]
    import asyncio

    assert asyncio.run(verifier.verify(headers, path="/x")).identifier == "wimse://partner.example/a"
    with pytest.raises(ValueError, match="holds the dev issuer of 'partner.example', not 'example.com'"):
        DevIssuer.load_or_create(path, "example.com")
    with pytest.raises(FileExistsError):
        created.save(path)


def test_dev_issuer_file_that_is_not_one_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "issuer.json"
    path.write_text('{"keys": []}')
    with pytest.raises(ValueError, match="is not a dev issuer file"):
        DevIssuer.load_or_create(path)


# --- first hour: two processes, the client's options, refusals in the service's log ----------


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
def test_service_and_client_as_two_processes_share_the_dev_issuer_file(tmp_path: Path, profile: str) -> None:
    env = {"WIMSE_DEV_ISSUER": str(tmp_path / "issuer.json"), "WIMSE_PROFILE": profile}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WIMSE_")}
    with example_service({**env, "WIMSE_TRUST_ANCHORS": ""}) as origin:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "client.py"), "--profile", profile, origin],
            env={**clean, **env}, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == '200 {"workload":"wimse://example.com/demo-client"}'
        other = subprocess.run(
            [sys.executable, str(EXAMPLES / "client.py"), "--method", "GET", "--path", "/whoami",
             "--identifier", "wimse://example.com/ops/one", "--profile", profile, origin],
            env={**clean, **env}, capture_output=True, text=True, timeout=60,
        )
        assert other.returncode == 0 and '"user":"wimse://example.com/ops/one"' in other.stdout
        # A client with another dev issuer's file is a stranger to the service.
        stranger = {**clean, **env, "WIMSE_DEV_ISSUER": str(tmp_path / "other.json")}
        refused = subprocess.run([sys.executable, str(EXAMPLES / "client.py"), "--profile", profile, origin],
                                 env=stranger, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "wit-key-unknown" in refused.stdout  # its kid is not trusted


def test_client_has_help_and_a_profile_option() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / "client.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--profile {wpt-01,wpt-02}" in result.stdout and "WIMSE_DEV_ISSUER" in result.stdout
    bad = subprocess.run(
        [sys.executable, str(EXAMPLES / "client.py"), "--profile", "wpt-9"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2


def test_service_logs_each_refusal_by_default_without_tokens(tmp_path: Path, anchors_file: Path) -> None:
    log = tmp_path / "service.log"
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIMSE_")}
    env.update(WIMSE_TRUST_ANCHORS=str(anchors_file), WIMSE_ORIGINS=origin)  # and no WIMSE_LOG_LEVEL: the default
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "service:app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    key = SigningKey.generate("ES256")
    wit = ISSUER.issue_wit("wimse://example.com/caller", key)
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for(origin + "/healthz", process)
            assert httpx.post(origin + "/path").json()["code"] == "wit-missing"
            wrong = {"Workload-Identity-Token": wit, "Workload-Proof-Token": mint_wpt(key, wit, "https://elsewhere.example/path")}
            assert httpx.post(origin + "/path", headers=wrong).json()["code"] == "wpt-audience"
            ready = httpx.get(origin + "/readyz")
        finally:
            process.terminate()
            process.wait(timeout=15)
    text = log.read_text()
    assert "wpt rejected code=wit-missing" in text
    assert "wpt rejected code=wpt-audience" in text and "workload=wimse://example.com/caller" in text
    assert wit[-20:] not in text and wrong["Workload-Proof-Token"][-20:] not in text
    assert ready.status_code == 200 and ready.json()["trust_domains"]["example.com"]["ok"] is True


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the example service exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the example service did not start")


@pytest.mark.parametrize("mode", ["report-only", "optional"])
def test_wimse_mode_reaches_the_middleware(anchors_file: Path, mode: str) -> None:
    with example_service({"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_MODE": mode}) as origin:
        unsigned = httpx.get(origin + "/hello")
        with httpx.Client(base_url=origin, auth=auth()) as client:
            signed = client.get("/hello")
        key = SigningKey.generate("ES256")
        wit = ISSUER.issue_wit("wimse://example.com/caller", key)
        wrong = {"Workload-Identity-Token": wit, "Workload-Proof-Token": mint_wpt(key, wit, "https://elsewhere.example/")}
        failed = httpx.get(origin + "/hello", headers=wrong)
    assert unsigned.status_code == 200 and unsigned.json() == {"workload": None}
    assert signed.json() == {"workload": "wimse://example.com/caller"}
    if mode == "report-only":  # never blocks; the app sees nothing it did not verify
        assert failed.status_code == 200 and failed.json() == {"workload": None}
    else:  # optional: headers that are there must verify
        assert failed.status_code == 400 and failed.json()["code"] == "wpt-audience"


def test_enforce_is_the_default_mode_of_the_example(service: str) -> None:
    assert httpx.get(service + "/hello").json()["code"] == "wit-missing"
