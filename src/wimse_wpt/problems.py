"""Failures as data: a stable code, an HTTP status, a title and a detail.

Every way a request can be refused has one code here. The verifier raises
:class:`VerificationError` carrying a :class:`Problem`; only the edge (the middleware)
renders it, as RFC 9457 ``application/problem+json``. Details are fixed sentences: they
never contain a token or any other value the caller sent, with one exception: ``wpt-audience``
names the target URI expected (a configured origin and the request's own path, truncated).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

Profile = Literal["wpt-01", "wpt-02"]
PROFILES: tuple[Profile, ...] = ("wpt-01", "wpt-02")

#: Problem ``type`` URIs are ``PROBLEM_TYPE_BASE + code``: identifiers, not links.
PROBLEM_TYPE_BASE = "urn:wimse-wpt:problem:"


class Kind(enum.Enum):
    #: The WIT, the WPT or a token bound by it is missing or wrong: 400 (wpt-01) or 401 (wpt-02).
    CREDENTIAL = "credential"
    #: The credentials verified, but this workload may not call this route: 403.
    FORBIDDEN = "forbidden"
    #: A check could not run (replay store, key source): 503, and the request is refused.
    UNAVAILABLE = "unavailable"
    #: The request itself is unfit to judge (an ambiguous path): 400 under every profile.
    REQUEST = "request"
    #: The sender is over its share of a shared resource (the replay cache): 429.
    LIMITED = "limited"
    #: Something failed inside verification that no input should reach: 500, no detail.
    INTERNAL = "internal"


_C, _F, _U = Kind.CREDENTIAL, Kind.FORBIDDEN, Kind.UNAVAILABLE
_R, _L, _I = Kind.REQUEST, Kind.LIMITED, Kind.INTERNAL

#: code -> (kind, title). The README lists every entry; a test keeps the two in step.
CATALOG: dict[str, tuple[Kind, str]] = {
    # The Workload Identity Token.
    "wit-missing": (_C, "Workload identity token missing"),
    "wit-multiple": (_C, "More than one workload identity token"),
    "wit-too-large": (_C, "Workload identity token too large"),
    "wit-malformed": (_C, "Workload identity token malformed"),
    "wit-type": (_C, "Workload identity token has the wrong type"),
    "wit-alg": (_C, "Workload identity token algorithm not allowed"),
    "wit-crit": (_C, "Workload identity token has an unsupported critical header"),
    "wit-subject": (_C, "Workload identifier invalid"),
    "wit-trust-domain": (_C, "Trust domain not trusted"),
    "wit-key-unknown": (_C, "No trust anchor key for the workload identity token"),
    "wit-signature": (_C, "Workload identity token signature invalid"),
    "wit-claim-invalid": (_C, "Workload identity token claim missing or invalid"),
    "wit-expired": (_C, "Workload identity token expired"),
    "wit-lifetime": (_C, "Workload identity token lifetime too long"),
    "wit-cnf": (_C, "Workload identity token confirmation key invalid"),
    # The Workload Proof Token.
    "wpt-missing": (_C, "Workload proof token missing"),
    "wpt-multiple": (_C, "More than one workload proof token"),
    "wpt-too-large": (_C, "Workload proof token too large"),
    "wpt-malformed": (_C, "Workload proof token malformed"),
    "wpt-type": (_C, "Workload proof token has the wrong type"),
    "wpt-alg": (_C, "Workload proof token algorithm does not match the confirmation key"),
    "wpt-crit": (_C, "Workload proof token has an unsupported critical header"),
    "wpt-signature": (_C, "Workload proof token signature invalid"),
    "wpt-claim-invalid": (_C, "Workload proof token claim missing or invalid"),
    "wpt-expired": (_C, "Workload proof token expired"),
    "wpt-lifetime": (_C, "Workload proof token lifetime too long"),
    "wpt-audience": (_C, "Workload proof token audience does not match the target URI"),
    "wpt-wth": (_C, "Workload proof token is not bound to this workload identity token"),
    "wpt-replayed": (_C, "Workload proof token replayed"),
    # Other tokens on the request, bound by ath, tth and oth.
    "authorization-multiple": (_C, "More than one Authorization field"),
    "authorization-malformed": (_C, "Authorization field malformed"),
    "ath-missing": (_C, "Access token not bound by the proof"),
    "ath-mismatch": (_C, "Access token hash mismatch"),
    "ath-unexpected": (_C, "Proof binds an access token that is not on the request"),
    "txn-token-multiple": (_C, "More than one Txn-Token field"),
    "tth-missing": (_C, "Transaction token not bound by the proof"),
    "tth-mismatch": (_C, "Transaction token hash mismatch"),
    "tth-unexpected": (_C, "Proof binds a transaction token that is not on the request"),
    "oth-header-multiple": (_C, "A token header bound by oth occurs more than once"),
    "oth-missing": (_C, "Token header not bound by the proof"),
    "oth-mismatch": (_C, "Other token hash mismatch"),
    "oth-unexpected": (_C, "Proof binds a token header that is not on the request"),
    "oth-unknown": (_C, "Proof binds a token header this service does not accept"),
    # Authorization by workload identifier (middleware route rules).
    "workload-forbidden": (_F, "Workload not allowed"),
    # Bearer tokens during a migration (wpt-01 section 2.2; middleware's BearerCoexistence).
    "bearer-invalid": (_C, "Bearer token not valid"),
    "bearer-refused": (_F, "Bearer token not accepted from this caller"),
    # Checks that could not run: refused, never waved through.
    "replay-store-unavailable": (_U, "Replay store unavailable"),
    "replay-cache-full": (_U, "Replay cache full"),
    "trust-anchors-unavailable": (_U, "Trust anchor keys unavailable"),
    "replay-store-unsafe": (_U, "Replay store may forget recorded proofs"),
    # The request, the sender's share, and our own failures.
    "path-ambiguous": (_R, "Request path ambiguous"),
    "replay-quota-exceeded": (_L, "Replay cache share exceeded"),
    "internal-error": (_I, "Internal error"),
}


def status_for(kind: Kind, profile: Profile) -> int:
    if kind is Kind.CREDENTIAL:
        # wpt-01 advises against 401 (it would demand WWW-Authenticate); wpt-02 asks for it.
        return 401 if profile == "wpt-02" else 400
    return _STATUS[kind]


_STATUS = {Kind.FORBIDDEN: 403, Kind.UNAVAILABLE: 503, Kind.REQUEST: 400, Kind.LIMITED: 429, Kind.INTERNAL: 500}


@dataclass(frozen=True, slots=True)
class Problem:
    """One refusal, ready to render: RFC 9457 members plus the stable ``code``."""

    code: str
    status: int
    title: str
    detail: str
    #: For the refusal's log line only, never rendered: what an operator needs to see
    #: (e.g. the expected and the received ``aud``), truncated and escaped, never a token.
    log_context: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, code: str, detail: str, profile: Profile = "wpt-01", log_context: str | None = None) -> Problem:
        kind, title = CATALOG[code]
        return cls(code, status_for(kind, profile), title, detail, log_context)

    @property
    def kind(self) -> Kind:
        return CATALOG[self.code][0]

    @property
    def type(self) -> str:
        return PROBLEM_TYPE_BASE + self.code

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }


class VerificationError(Exception):
    """The request was refused; ``problem`` says why. ``identifier`` is the workload
    identifier when the WIT had verified before the refusal (for logs), else None."""

    def __init__(self, problem: Problem, identifier: str | None = None) -> None:
        super().__init__(f"{problem.code}: {problem.detail}")
        self.problem = problem
        self.identifier = identifier


class Reject(Exception):
    """Raised inside the checks with a code and a detail; the verifier adds the profile."""

    __slots__ = ("code", "detail", "log_context")

    def __init__(self, code: str, detail: str, log_context: str | None = None) -> None:
        self.code = code
        self.detail = detail
        self.log_context = log_context  # see Problem.log_context
