"""What the installed distribution promises: a light import, the version, optional parts as extras."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import metadata, requires, version

import wimse_wpt

# Heavy or optional packages that `import wimse_wpt` must not pull in: each belongs to an extra
# (or to FastAPI's own stack), so a service that does not use it neither installs nor pays for it.
OPTIONAL_MODULES = ["redis", "fastapi", "pydantic", "prometheus_client", "opentelemetry", "uvicorn", "uvloop"]


def test_import_stays_light() -> None:
    probe = "import json, sys, wimse_wpt; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout)
    heavy = [name for name in loaded if name.split(".")[0] in OPTIONAL_MODULES]
    assert heavy == []


def test_version_comes_from_the_distribution_metadata() -> None:
    assert wimse_wpt.__version__ == version("wimse-wpt")
    assert wimse_wpt.__version__ != "0+unknown"


def _requirements() -> dict[str | None, set[str]]:
    """Requirement names by extra (None: core)."""
    by_extra: dict[str | None, set[str]] = {}
    for line in requires("wimse-wpt") or []:
        spec, _, marker = line.partition(";")
        name = spec.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        extra = marker.split("extra ==")[1].strip().strip("'\"") if "extra ==" in marker else None
        by_extra.setdefault(extra, set()).add(name)
    return by_extra


def test_optional_parts_are_extras_and_development_tools_are_not_published() -> None:
    by_extra = _requirements()
    assert by_extra[None] >= {"starlette", "joserfc", "cryptography", "httpx", "cachetools", "pynacl"}
    assert by_extra[None].isdisjoint({"redis", "fastapi", "prometheus-client", "opentelemetry-api", "uvloop"})
    assert by_extra["redis"] == {"redis"}
    assert by_extra["prometheus"] == {"prometheus-client"}
    assert by_extra["otel"] == {"opentelemetry-api"}
    assert by_extra["fastapi"] == {"fastapi"}
    assert by_extra["bench"] == {"uvloop", "httptools"}
    # test/lint/docs tools are PEP 735 dependency groups: never offered to users as extras.
    assert set(metadata("wimse-wpt").get_all("Provides-Extra") or []) == {"redis", "prometheus", "otel", "fastapi", "bench"}


def test_metadata_declares_license_and_typing() -> None:
    meta = metadata("wimse-wpt")
    assert meta["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
