"""An example client: signs each request with the httpx auth.

    python examples/client.py http://127.0.0.1:8000

Uses the development trust domain that the example service trusts by default.
"""

from __future__ import annotations

import os
import sys

import httpx
from devenv import dev_issuer

from wimse_wpt import SigningKey, WPTAuth

IDENTIFIER = "wimse://example.com/demo-client"


def signed_client(
    origin: str, identifier: str = IDENTIFIER, profile: str = "wpt-01", **auth_options: object
) -> httpx.Client:
    """An httpx client whose every request carries the WIT and a fresh WPT."""
    issuer = dev_issuer(os.environ)
    key = SigningKey.generate("ES256")
    wit = issuer.issue_wit(identifier, key)
    return httpx.Client(base_url=origin, auth=WPTAuth(key, wit, profile=profile, **auth_options))  # type: ignore[arg-type]


def main() -> None:
    origin = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    with signed_client(origin) as client:
        response = client.post("/path", json={"do stuff": "please"})
        print(response.status_code, response.text)


if __name__ == "__main__":
    main()
