"""The regex guard's core: built-ins with their validators, custom patterns, and linear time on hostile input."""

from __future__ import annotations

import re2

from extproc.policies.guards.regex import MAX_BUILTIN_MATCH, compile_rules, luhn_ok

ALL = ("Ssn", "CreditCard", "PhoneNumber", "Email", "CaSin")


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("5500000000000004") and luhn_ok("130692544")
    assert not luhn_ok("4111111111111112") and not luhn_ok("130692545")


def test_builtins_mask_with_agentgateway_labels() -> None:
    rules = compile_rules(ALL, ())
    cases = {
        "Card number: 4111-1111-1111-1111 ok": "Card number: <CREDIT_CARD> ok",
        "amex 3782 822463 10005.": "amex <CREDIT_CARD>.",
        "My ssn is 123-45-6789 ok": "My ssn is <SSN> ok",
        "contact john.doe@example.com or jane@other.org now": "contact <EMAIL_ADDRESS> or <EMAIL_ADDRESS> now",
        "call (555) 123-4567 or +44 20 7946 0958": "call <PHONE_NUMBER> or <PHONE_NUMBER>",
        "SIN 130 692 544 please": "SIN <CA_SIN> please",
    }
    for text, masked in cases.items():
        assert rules.mask(text) == masked, text


def test_validators_cut_false_positives() -> None:
    rules = compile_rules(("CreditCard", "Ssn", "CaSin"), ())
    assert rules.mask("order 4111 1111 1111 1112 shipped") is None  # fails Luhn
    assert rules.mask("ssn 000-12-3456 or 666-12-3456 or 923-45-6789") is None  # invalid areas
    assert rules.mask("ticket 130 692 545") is None  # SIN fails Luhn
    assert compile_rules(("PhoneNumber",), ()).mask("version 1.2.3 build 42") is None


def test_custom_patterns_mask_and_merge_overlaps() -> None:
    rules = compile_rules(("CreditCard",), (r"\d{2}",))
    # every rule runs on the original text; overlapping matches become one mask with the first label
    assert rules.mask("Card number: 4111-1111-1111-1111 or id:12-34") == (
        "Card number: <CREDIT_CARD> or id:<masked>-<masked>"
    )
    assert compile_rules((), ("a*",)).mask("bbb") is None  # empty matches mask nothing


def test_spans_from_a_position_see_the_context_before_it() -> None:
    rules = compile_rules(("CreditCard",), ())
    text = "x94111111111111111"  # digits glued to the previous ones: no word boundary, no card
    assert rules.spans(text, 2) == []
    assert rules.spans("x 4111111111111111", 2) == [(2, 18, "<CREDIT_CARD>")]


def test_compiled_once_per_rule_set() -> None:
    assert compile_rules(ALL, ("x+",)) is compile_rules(ALL, ("x+",))
    assert compile_rules(ALL, ()).bounded and not compile_rules(ALL, ("x+",)).bounded


def test_catastrophic_backtracking_pattern_is_linear() -> None:
    """`(a+)+b` on a's with no b: exponential for a backtracking engine, one linear pass for RE2."""
    rules = compile_rules((), (r"(a+)+b", r"(x|x)*y"))
    assert rules.mask("a" * 1_000_000) is None
    assert rules.mask("x" * 1_000_000) is None
    assert rules.mask("a" * 50 + "b") == "<masked>"
    nested = compile_rules((), (r"(.*a){20}",))
    assert nested.mask("a" * 1_000_000) == "<masked>"


def test_builtin_matches_are_bounded() -> None:
    """The streamed mask's guarantee needs every built-in match to fit in its holdback."""
    rules = compile_rules(ALL, ())
    long_local = "a" * 500 + "@example.com"
    for start, end, _ in rules.spans(long_local):
        assert end - start <= MAX_BUILTIN_MATCH
    assert all(re2.compile(r.regex.pattern) for r in rules.rules)
