"""Bearer tokens alongside WITs during a migration (wpt-01 section 2.2).

    async def check_bearer(token: str) -> str | None:
        ...  # your existing JWT validation; the caller's workload identifier, or None
    bearer = BearerCoexistence(check_bearer,
                               allow=["wimse://example.com/legacy/*"],      # may still use a bearer
                               wit_capable=["wimse://example.com/legacy/billing"])  # may not any more
    WPTMiddleware(app, verifier, bearer=bearer)

A request that carries any WIMSE header (``Workload-Identity-Token``, ``Workload-Proof-Token``
or ``Authorization: WPT``) always goes the WPT way. One without, whose single ``Authorization``
field is ``Bearer``, goes to the app's callable; the identifier it returns (never a claim read
before that check) is then matched against both lists: the spec warns that which token to
prefer is decided before the caller is authenticated, and must be checked again after.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable

from starlette.authentication import BaseUser

from .identifiers import IdentifierPattern, parse_identifier

#: The app's bearer check: the token as sent -> the caller's workload identifier, or None.
BearerVerifier = Callable[[str], Awaitable[str | None]]

#: Starlette auth scopes granted to a bearer caller: ``@requires("bearer")``; never
#: ``"workload"``, which stays the mark of a verified WIT and WPT.
BEARER_SCOPES = ("authenticated", "bearer")


class BearerCoexistence:
    """Which callers may still authenticate with a bearer token, and how it is checked.

    Args:
        verify: an async callable taking the bearer token (str) and returning the caller's
            workload identifier (a canonical ``wimse://`` or ``spiffe://`` identifier), or
            None when the token is not valid. If it raises, the request is refused
            (``500 internal-error``): fail closed.
        allow: identifier patterns of callers that may use a bearer token (required).
        wit_capable: identifier patterns of callers known to send WITs: refused a
            bearer-only request even when ``allow`` matches them.
        max_bytes: a longer bearer token is refused before the callable sees it.
    """

    def __init__(
        self,
        verify: BearerVerifier,
        *,
        allow: Iterable[str],
        wit_capable: Iterable[str] = (),
        max_bytes: int = 8192,
    ) -> None:
        if not callable(verify):
            raise TypeError("verify must be an async callable taking the bearer token")
        self.verify = verify
        self.allow = tuple(IdentifierPattern(p) for p in ([allow] if isinstance(allow, str) else allow))
        if not self.allow:
            raise ValueError("allow must name at least one caller pattern that may use a bearer token")
        capable = [wit_capable] if isinstance(wit_capable, str) else wit_capable
        self.wit_capable = tuple(IdentifierPattern(p) for p in capable)
        if not 0 < max_bytes <= 1024 * 1024:
            raise ValueError("max_bytes must be between 1 and 1 MiB")
        self.max_bytes = max_bytes

    async def identify(self, token: str) -> str | None:
        """The identifier the app's callable vouches for, or None (not a valid token, or not
        a canonical identifier). Exceptions from the callable propagate."""
        answer: object = self.verify(token)
        result = await answer if inspect.isawaitable(answer) else answer
        if not isinstance(result, str):
            return None
        try:
            parse_identifier(result)
        except ValueError:
            return None
        return result

    def may_use_bearer(self, identifier: str) -> bool:
        """Listed in ``allow`` and not known to be WIT-capable."""
        if any(p.matches(identifier) for p in self.wit_capable):
            return False
        return any(p.matches(identifier) for p in self.allow)


class BearerUser(BaseUser):
    """Starlette's ``request.user`` for a caller authenticated by a bearer token (not a WPT)."""

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.identifier

    @property
    def identity(self) -> str:
        return self.identifier
