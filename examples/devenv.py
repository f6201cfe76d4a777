"""What the examples add to the package's settings: a development trust domain by default.

The settings themselves (every ``WIMSE_*`` variable) live in :mod:`wimse_wpt.settings`. The
examples only fill in ``WIMSE_DEV_ISSUER`` when no trust anchors are given, so that the
service, the client and the demo, each in its own process, share one dev issuer's key file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from wimse_wpt import DevIssuer

DEFAULT_DEV_ISSUER = Path(tempfile.gettempdir()) / "wimse-wpt-dev" / "issuer.json"


def example_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with WIMSE_DEV_ISSUER defaulted when neither it nor WIMSE_TRUST_ANCHORS is set."""
    result = dict(env)
    if not result.get("WIMSE_TRUST_ANCHORS") and not result.get("WIMSE_DEV_ISSUER"):
        result["WIMSE_DEV_ISSUER"] = str(DEFAULT_DEV_ISSUER)
    return result


def dev_issuer_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("WIMSE_DEV_ISSUER") or DEFAULT_DEV_ISSUER)


def dev_issuer(env: Mapping[str, str]) -> DevIssuer:
    """The development trust domain shared by the example service and client."""
    return DevIssuer.load_or_create(dev_issuer_path(env))
