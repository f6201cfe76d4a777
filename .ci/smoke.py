"""Smoke test of an installed wimse-wpt (run from outside the checkout): import, version, one verified request.

    python smoke.py [--with redis,fastapi]   # the extras that must be importable; others must be absent
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.resources
import importlib.util
import sys

import wimse_wpt
from wimse_wpt import DevIssuer, SigningKey, Verifier, mint_wpt

extras = set(sys.argv[2].split(",")) if len(sys.argv) > 2 and sys.argv[1] == "--with" else set()

assert "site-packages" in wimse_wpt.__file__, f"not the installed copy: {wimse_wpt.__file__}"
assert wimse_wpt.__version__ == importlib.metadata.version("wimse-wpt"), wimse_wpt.__version__
assert importlib.resources.files("wimse_wpt").joinpath("py.typed").is_file(), "py.typed is not shipped"
for extra, module in {"redis": "redis", "fastapi": "fastapi", "prometheus": "prometheus_client"}.items():
    present = importlib.util.find_spec(module) is not None
    assert present == (extra in extras), f"{module} installed: {present}, extra {extra} asked: {extra in extras}"

issuer = DevIssuer("example.com")
key = SigningKey.generate("Ed25519")
wit = issuer.issue_wit("wimse://example.com/smoke", key)
verifier = Verifier({"example.com": issuer.jwks}, ["https://service.example"])
headers = [
    (b"host", b"service.example"),
    (b"workload-identity-token", wit.encode()),
    (b"workload-proof-token", mint_wpt(key, wit, "https://service.example/smoke").encode()),
]
workload = asyncio.run(verifier.verify(headers, path="/smoke"))
assert workload.identifier == "wimse://example.com/smoke", workload
if "fastapi" in extras:
    import wimse_wpt.fastapi  # noqa: F401
print(f"smoke: wimse-wpt {wimse_wpt.__version__} from {wimse_wpt.__file__}: verified {workload.identifier}")
