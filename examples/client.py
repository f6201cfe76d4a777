"""An example client: signs each request with the httpx auth.

    python examples/client.py http://127.0.0.1:8000
    python examples/client.py --profile wpt-02 --path /whoami --method GET http://127.0.0.1:8000

Uses the development trust domain that the example service trusts by default: both read
the dev issuer's key file (WIMSE_DEV_ISSUER, default under the temp dir), so the service and
this client, two processes, share one trust domain.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Call the example service with a WIT and a fresh WPT from the development issuer.",
        epilog="The issuer's key file is WIMSE_DEV_ISSUER (the service reads the same variable).",
    )
    parser.add_argument("origin", nargs="?", default="http://127.0.0.1:8000", help="default http://127.0.0.1:8000")
    parser.add_argument("--profile", choices=["wpt-01", "wpt-02"], default=os.environ.get("WIMSE_PROFILE", "wpt-01"),
                        help="the profile the service speaks (default: WIMSE_PROFILE, else wpt-01)")
    parser.add_argument("--identifier", default=IDENTIFIER, help=f"the workload identifier (default {IDENTIFIER})")
    parser.add_argument("--method", default="POST", help="default POST")
    parser.add_argument("--path", default="/path", help="default /path")
    args = parser.parse_args(argv)
    with signed_client(args.origin, args.identifier, args.profile) as client:
        try:
            response = client.request(args.method, args.path, json={"do stuff": "please"} if args.method == "POST" else None)
        except httpx.TransportError as exc:
            print(f"cannot reach {args.origin}: {exc}", file=sys.stderr)
            return 1
    print(response.status_code, response.text)
    return 0 if response.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
