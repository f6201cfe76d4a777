"""The checks a request goes through, in the order the verifier runs them, and which
problem codes each one raises.

This is the map from a refusal's code to the check that refused it: ``wimse-wpt inspect``
presents it as a checklist (every check before the failing one passed), and observability
events name the failing check's ``stage``. A test keeps it complete against
:data:`~wimse_wpt.problems.CATALOG`: every code belongs to exactly one check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # short, stable: "wit-signature"
    stage: str  # the group it belongs to, as events report it
    description: str  # what passing it means
    codes: tuple[str, ...]
    #: False for checks the service makes around the verifier (paths, route rules): a
    #: verifier run alone (``wimse-wpt inspect``) cannot tell whether they pass.
    by_verifier: bool = True


#: In the verifier's order. Where a code can be raised by more than one rule (``*-malformed``,
#: ``wpt-claim-invalid``) it sits with the first check that raises it.
CHECKS: Final[tuple[Check, ...]] = (
    Check("request-path", "request", "the request path is unambiguous", ("path-ambiguous",), by_verifier=False),
    Check("wit-field", "wit", "exactly one Workload-Identity-Token field, within the size cap",
          ("wit-missing", "wit-multiple", "wit-too-large")),
    Check("wit-format", "wit", "the WIT is one compact JWS, typ wit+jwt, no crit",
          ("wit-malformed", "wit-type", "wit-crit")),
    Check("wit-alg", "wit", "the WIT's alg is an allowed asymmetric algorithm", ("wit-alg",)),
    Check("wit-subject", "wit", "sub is a canonical wimse:// or spiffe:// identifier", ("wit-subject",)),
    Check("wit-trust-domain", "wit", "the identifier's trust domain is configured", ("wit-trust-domain",)),
    Check("wit-validity", "wit", "exp present, not passed, not too far; nbf not in the future",
          ("wit-claim-invalid", "wit-expired", "wit-lifetime")),
    Check("wit-cnf", "wit", "cnf.jwk is a public key whose alg fits it", ("wit-cnf",)),
    Check("anchor-key", "anchors", "the trust domain's keys are available and one fits kid and alg",
          ("trust-anchors-unavailable", "wit-key-unknown")),
    Check("wit-signature", "wit", "the WIT's signature verifies under the anchor key", ("wit-signature",)),
    Check("authorization-field", "wpt", "at most one well-formed Authorization field",
          ("authorization-multiple", "authorization-malformed")),
    Check("wpt-field", "wpt", "exactly one proof field, within the size cap",
          ("wpt-missing", "wpt-multiple", "wpt-too-large")),
    Check("wpt-format", "wpt", "the WPT is one compact JWS, typ wpt+jwt, no crit",
          ("wpt-malformed", "wpt-type", "wpt-crit")),
    Check("wpt-alg", "wpt", "the WPT's alg is the alg of the WIT's cnf.jwk", ("wpt-alg",)),
    Check("wpt-validity", "wpt", "exp present, not passed, not too far; jti present",
          ("wpt-claim-invalid", "wpt-expired", "wpt-lifetime")),
    Check("wpt-wth", "wpt", "wth is the hash of the WIT sent", ("wpt-wth",)),
    Check("wpt-audience", "wpt", "aud is this request's target URI or an accepted alias", ("wpt-audience",)),
    Check("ath", "binding", "a bearer token is bound by ath, and ath only with one",
          ("ath-missing", "ath-mismatch", "ath-unexpected")),
    Check("tth", "binding", "a Txn-Token is bound by tth, and tth only with one",
          ("txn-token-multiple", "tth-missing", "tth-mismatch", "tth-unexpected")),
    Check("oth", "binding", "each configured token header is bound by oth, and oth binds only those",
          ("oth-header-multiple", "oth-missing", "oth-mismatch", "oth-unexpected", "oth-unknown")),
    Check("wpt-signature", "wpt", "the WPT is signed by the WIT's confirmation key", ("wpt-signature",)),
    Check("replay", "replay", "this (workload, jti) was never accepted before",
          ("wpt-replayed", "replay-store-unavailable", "replay-cache-full", "replay-store-unsafe",
           "replay-quota-exceeded")),
    Check("bearer", "bearer", "a bearer-only caller is vouched for by the app, may still use a bearer and is not WIT-capable",
          ("bearer-invalid", "bearer-refused"), by_verifier=False),
    Check("route-allow", "policy", "the workload is allowed on this route", ("workload-forbidden",), by_verifier=False),
    Check("internal", "internal", "no unexpected failure inside verification", ("internal-error",)),
)

#: problem code -> the check that raises it.
CHECK_FOR_CODE: Final[Mapping[str, Check]] = MappingProxyType(
    {code: check for check in CHECKS for code in check.codes}
)


def stage_of(code: str | None) -> str:
    """The stage a refusal happened in (``"wit"``, ``"wpt"``, ``"replay"``...); ``"done"``
    when nothing was refused; ``"unknown"`` for a code this table does not know."""
    if code is None:
        return "done"
    check = CHECK_FOR_CODE.get(code)
    return check.stage if check else "unknown"
