"""Workload identifiers: the one-match canonical form gives the verdicts of the rule-by-rule parse."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wimse_wpt import WorkloadIdentifier, parse_identifier

# The rules one by one, as parse_identifier applied them before it matched the whole form at once.
_TRUST_DOMAIN = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_FORMS = {
    "wimse": re.compile(r"wimse://([a-z0-9._-]+)((?:/[A-Za-z0-9._~-]+)+)"),
    "spiffe": re.compile(r"spiffe://([a-z0-9._-]+)((?:/[A-Za-z0-9._-]+)+)"),
}


def rule_by_rule(value: str) -> tuple[str, str, str] | None:
    if len(value) > 2048 or not value.isascii():
        return None
    scheme = value.partition(":")[0]
    form = _FORMS.get(scheme)
    match = form.fullmatch(value) if form else None
    if match is None:
        return None
    domain, path = match.group(1), match.group(2)
    if len(domain) > 255 or _TRUST_DOMAIN.fullmatch(domain) is None:
        return None
    if any(segment in (".", "..") for segment in path.split("/")):
        return None
    return scheme, domain, path


def verdict(value: str) -> tuple[str, str, str] | None:
    try:
        parsed = parse_identifier(value)
    except ValueError:
        return None
    assert parsed.value == value
    return parsed.scheme, parsed.trust_domain, parsed.path


CASES = [
    "wimse://example.com/a",
    "spiffe://example.com/ns/prod/sa/api",
    "wimse://example.com/a/./b",
    "wimse://example.com/a/..",
    "wimse://example.com/.",
    "wimse://example.com/..a/.b/a.",
    "wimse://example.com/.../a..b",
    "wimse://a..b/x",
    "wimse://.a/x",
    "wimse://a./x",
    "wimse://./x",
    "wimse://example.com/~x",
    "spiffe://example.com/~x",
    "wimse://" + "a" * 255 + "/x",
    "wimse://" + "a" * 256 + "/x",
    "wimse://" + ".".join(["a"] * 128) + "/x",
    "wimse://example.com/" + "a" * 2028,
    "wimse://example.com/" + "a" * 2029,
    "wimse://example.com/a\n",
    "wimse://example.com/é",
    "WIMSE://example.com/a",
    "wimse:/example.com/a",
    "wimse://example.com",
    "wimse://example.com/",
    "wimse://example.com//a",
]


@pytest.mark.parametrize("value", CASES)
def test_known_cases_keep_their_verdict(value: str) -> None:
    assert verdict(value) == rule_by_rule(value)


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(["wimse://", "spiffe://", "wimse:/", "https://", ""]),
    st.text(alphabet="abZ09._-~/%:@é\n", max_size=40),
)
def test_the_one_match_form_agrees_with_the_rules(scheme: str, rest: str) -> None:
    value = scheme + rest
    assert verdict(value) == rule_by_rule(value)


def test_a_refusal_still_names_the_rule() -> None:
    with pytest.raises(ValueError, match="trust domain is not canonical"):
        parse_identifier("wimse://a..b/x")
    with pytest.raises(ValueError, match="dot segments"):
        parse_identifier("wimse://example.com/a/../b")
    with pytest.raises(ValueError, match="not a canonical"):
        parse_identifier("wimse://example.com/a/")


def test_a_parsed_identifier_is_an_ordinary_frozen_one() -> None:
    parsed = parse_identifier("wimse://example.com/a/b")
    assert parsed == WorkloadIdentifier("wimse://example.com/a/b", "wimse", "example.com", "/a/b")
    assert str(parsed) == "wimse://example.com/a/b"
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.path = "/c"  # type: ignore[misc]
