"""Settings from the environment: every variable read, checked, and named when wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wimse_wpt import DevIssuer, JWKSFile, MemoryReplayCache, RedisReplayCache, RemoteJWKS, StaticKeys
from wimse_wpt.settings import MODES, VARIABLES, Settings

ISSUER = DevIssuer("example.com")


@pytest.fixture
def anchors_file(tmp_path: Path) -> Path:
    (tmp_path / "partner.jwks").write_text(json.dumps(DevIssuer("partner.example").jwks))
    path = tmp_path / "anchors.json"
    path.write_text(json.dumps({"example.com": ISSUER.jwks, "partner.example": "partner.jwks"}))
    return path


def test_defaults_with_only_trust_anchors(anchors_file: Path) -> None:
    settings = Settings.from_env({"WIMSE_TRUST_ANCHORS": str(anchors_file)})
    assert settings.mode == "enforce" and settings.profile == "wpt-01"
    assert settings.origins == ("http://127.0.0.1:8000", "http://localhost:8000")
    verifier = settings.verifier()
    assert verifier.anchors.trust_domains == {"example.com", "partner.example"}
    # A relative file path is taken from the anchors file's folder.
    assert isinstance(verifier.anchors.sources("partner.example")[0], JWKSFile)
    assert isinstance(verifier.replay_cache, MemoryReplayCache)
    assert (verifier.leeway, verifier.max_wpt_lifetime, verifier.max_wit_lifetime) == (0.0, 300.0, 86400.0)


def test_every_knob_reaches_the_verifier(anchors_file: Path) -> None:
    env = {
        "WIMSE_TRUST_ANCHORS": str(anchors_file),
        "WIMSE_ORIGINS": "https://api.example.com, https://api2.example.com",
        "WIMSE_AUDIENCES": "https://old.example.com/",
        "WIMSE_PROFILE": "wpt-02",
        "WIMSE_MODE": "report-only",
        "WIMSE_OTH_HEADERS": "X-Custom-Token",
        "WIMSE_LEEWAY": "5",
        "WIMSE_MAX_WPT_LIFETIME": "120",
        "WIMSE_MAX_WIT_LIFETIME": "3600",
        "WIMSE_LOG_LEVEL": "debug",
    }
    settings = Settings.from_env(env)
    verifier = settings.verifier()
    assert settings.mode == "report-only" and settings.log_level == "DEBUG"
    assert verifier.profile == "wpt-02"
    assert verifier.origins == ("https://api.example.com", "https://api2.example.com")
    assert verifier.audiences == {"https://old.example.com/"}
    assert verifier.oth_headers == {"x-custom-token"}
    assert (verifier.leeway, verifier.max_wpt_lifetime, verifier.max_wit_lifetime) == (5.0, 120.0, 3600.0)


def test_remote_jwks_refresh_bounds_reach_the_key_source(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"example.com": "http://127.0.0.1:9/jwks.json"}))
    env = {
        "WIMSE_TRUST_ANCHORS": str(anchors),
        "WIMSE_ALLOW_INSECURE_JWKS": "1",
        "WIMSE_JWKS_MIN_REFRESH": "5",
        "WIMSE_JWKS_DEFAULT_REFRESH": "60",
        "WIMSE_JWKS_MAX_REFRESH": "600",
        "WIMSE_JWKS_MAX_STALE": "7200",
        "WIMSE_JWKS_TIMEOUT": "2",
        "WIMSE_JWKS_UNKNOWN_KID_REFRESH": "1",
    }
    source = Settings.from_env(env).trust_anchors().sources("example.com")[0]
    assert isinstance(source, RemoteJWKS)
    assert (source.min_refresh, source.default_refresh, source.max_refresh) == (5, 60, 600)
    assert (source.max_stale, source.timeout, source.unknown_kid_refresh) == (7200, 2, 1)
    # Without the opt-in, plain http is refused, and the variable is named.
    with pytest.raises(ValueError, match="^WIMSE_TRUST_ANCHORS: .*must be https"):
        Settings.from_env({**env, "WIMSE_ALLOW_INSECURE_JWKS": "0"}).trust_anchors()


def test_inline_json_anchors() -> None:
    settings = Settings.from_env({"WIMSE_TRUST_ANCHORS": json.dumps({"example.com": ISSUER.jwks})})
    source = settings.trust_anchors().sources("example.com")[0]
    assert isinstance(source, StaticKeys)


def test_no_anchors_at_all_is_refused_rather_than_trusting_nothing() -> None:
    with pytest.raises(ValueError, match="^WIMSE_TRUST_ANCHORS: not set"):
        Settings.from_env({})


def test_dev_issuer_is_created_once_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "issuer.json"
    first = Settings.from_env({"WIMSE_DEV_ISSUER": str(path)}).trust_anchors()
    second = Settings.from_env({"WIMSE_DEV_ISSUER": str(path)}).trust_anchors()
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.trust_domains == second.trust_domains == {"example.com"}
    issuer = DevIssuer.load_or_create(path)
    assert [k.kid for k in first.sources("example.com")[0]._keys.keys] == [issuer.kid]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WIMSE_PROFILE", "wpt-03"),
        ("WIMSE_MODE", "enforcing"),
        ("WIMSE_MODE", "REPORT-ONLY"),
        ("WIMSE_ORIGINS", "https://api.example.com/path"),
        ("WIMSE_ORIGINS", "ftp://api.example.com"),
        ("WIMSE_AUDIENCES", "not a uri"),
        ("WIMSE_OTH_HEADERS", "Workload-Identity-Token"),
        ("WIMSE_OTH_HEADERS", "bad header"),
        ("WIMSE_REPLAY_STORE", "memcached://x"),
        ("WIMSE_REPLAY_WAIT_REPLICAS", "-1"),
        ("WIMSE_REPLAY_WAIT_REPLICAS", "one"),
        ("WIMSE_REPLAY_WAIT_REPLICAS", "17"),
        ("WIMSE_REPLAY_WAIT_REPLICAS", "1"),  # the default store is memory: nothing to wait for
        ("WIMSE_LEEWAY", "-1"),
        ("WIMSE_LEEWAY", "301"),
        ("WIMSE_LEEWAY", "nan"),
        ("WIMSE_LEEWAY", "inf"),
        ("WIMSE_LEEWAY", "five"),
        ("WIMSE_MAX_WPT_LIFETIME", "0"),
        ("WIMSE_MAX_WPT_LIFETIME", "3601"),
        ("WIMSE_MAX_WIT_LIFETIME", "0"),
        ("WIMSE_JWKS_TIMEOUT", "0"),
        ("WIMSE_JWKS_UNKNOWN_KID_REFRESH", "-1"),
        ("WIMSE_JWKS_MAX_STALE", "-5"),
        ("WIMSE_ALLOW_INSECURE_JWKS", "maybe"),
        ("WIMSE_LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_raises_naming_the_variable(anchors_file: Path, name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}: "):
        Settings.from_env({"WIMSE_TRUST_ANCHORS": str(anchors_file), name: value})


def test_refresh_bounds_must_be_ordered(anchors_file: Path) -> None:
    env = {"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_JWKS_MIN_REFRESH": "600", "WIMSE_JWKS_DEFAULT_REFRESH": "60"}
    with pytest.raises(ValueError, match="WIMSE_JWKS_MIN_REFRESH.*min <= default <= max"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not JSON"),
        ("[]", "expected a JSON object"),
        ('{"Example.COM": {"keys": []}}', "not a canonical name"),
        ('{"example.com": "missing.jwks"}', "missing.jwks"),
    ],
)
def test_bad_anchors_file_is_named(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "anchors.json"
    if content is not None:
        path.write_text(content)
    settings = Settings.from_env({"WIMSE_TRUST_ANCHORS": str(path)})
    with pytest.raises(ValueError, match=f"^WIMSE_TRUST_ANCHORS: .*{message}"):
        settings.trust_anchors()


def test_modes_are_the_three_of_the_issue() -> None:
    assert MODES == ("enforce", "report-only", "optional")


def test_redis_store_and_its_password_never_described(anchors_file: Path) -> None:
    settings = Settings.from_env(
        {"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_REPLAY_STORE": "redis://user:s3cret@127.0.0.1:6379/0"}
    )
    assert isinstance(settings.replay_cache(), RedisReplayCache)
    described = json.dumps(settings.describe())
    assert "s3cret" not in described and "redis://user:***@127.0.0.1:6379/0" in described
    query = Settings.from_env({"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_REPLAY_STORE": "redis://h/0?password=s3cret"})
    assert "s3cret" not in json.dumps(query.describe())


def test_every_redis_url_form_and_wait_replicas_reach_the_store(anchors_file: Path) -> None:
    env = {"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_MAX_WPT_LIFETIME": "60", "WIMSE_LEEWAY": "5"}
    for url in ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "redis+sentinel://:pw@127.0.0.1:26379/replay"):
        settings = Settings.from_env({**env, "WIMSE_REPLAY_STORE": url, "WIMSE_REPLAY_WAIT_REPLICAS": "1"})
        cache = settings.replay_cache()
        assert isinstance(cache, RedisReplayCache) and cache.wait_replicas == 1
        assert cache.max_ttl == 65  # the loss window covers the longest entry: lifetime + leeway
        assert settings.describe()["replay_wait_replicas"] == 1
    assert "pw" not in json.dumps(settings.describe())
    malformed = Settings.from_env({**env, "WIMSE_REPLAY_STORE": "redis+sentinel://127.0.0.1:26379"})
    with pytest.raises(ValueError, match="WIMSE_REPLAY_STORE: .*service-name"):
        malformed.replay_cache()


def test_unknown_wimse_variables_are_reported(anchors_file: Path) -> None:
    settings = Settings.from_env({"WIMSE_TRUST_ANCHORS": str(anchors_file), "WIMSE_PROFIL": "wpt-02", "HOME": "/"})
    assert settings.unknown == ("WIMSE_PROFIL",)
    assert all(name.startswith("WIMSE_") for name in VARIABLES)


# --- configuration errors that say what to fix ----------------------------------------------


@pytest.mark.parametrize(
    ("config", "hint"),
    [
        ("/run/spire/bundle.json", "pass JWKSFile('/run/spire/bundle.json'), or use TrustAnchors.from_config"),
        (Path("bundle.json"), "pass JWKSFile('bundle.json'), or use TrustAnchors.from_config"),
        (["jwks.json"], "pass JWKSFile('jwks.json')"),
        ("https://issuer.example.com/jwks.json", "pass RemoteJWKS('https://issuer.example.com/jwks.json')"),
        ([ISSUER.jwks, "https://issuer.example.com/jwks.json"], "is a URL; pass RemoteJWKS("),
    ],
)
def test_a_path_or_url_given_as_an_anchor_points_to_the_right_source(config: object, hint: str) -> None:
    from wimse_wpt import TrustAnchors, Verifier

    with pytest.raises(ValueError, match="'example.com'") as caught:
        Verifier({"example.com": config}, ["https://api.example.com"])  # type: ignore[dict-item]
    assert hint in str(caught.value)
    with pytest.raises(ValueError):
        TrustAnchors({"example.com": config})  # type: ignore[dict-item]


def test_from_config_still_reads_paths_and_urls(anchors_file: Path) -> None:
    from wimse_wpt import TrustAnchors

    jwks = anchors_file.parent / "partner.jwks"
    loaded = TrustAnchors.from_config({"partner.example": str(jwks)})
    assert isinstance(loaded.sources("partner.example")[0], JWKSFile)
