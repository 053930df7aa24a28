"""The regex guard's pure core: built-in PII recognizers and custom patterns, on RE2.

Why RE2 (`google-re2`): guard patterns run on every prompt and every response chunk,
and both the text and (for custom `matches`) the pattern come from outside. Python's
`re` backtracks: `(a+)+b` against forty `a`s takes longer than the request budget.
RE2 matches in time linear in the text, with no backtracking, whatever the pattern
(tests/test_guards_regex.py runs that pattern on a megabyte of input).

Built-ins follow agentgateway's recognizers (crates/agentgateway/src/llm/policy/pii)
and their mask labels (`<CREDIT_CARD>`, `<SSN>`, `<PHONE_NUMBER>`, `<EMAIL_ADDRESS>`,
`<CA_SIN>`; custom patterns mask as `<masked>`), with validators that cut false
positives: card numbers and Canadian SINs must pass the Luhn check, SSNs must have a
valid area/group/serial, phone numbers need 10-15 digits.

All rules run on the original text ("parallel" semantics) and overlapping matches
merge, so a match's extent does not depend on the order of rules, and the streaming
mask (stream.py) can hold back exactly the text a match may still reach. Every
built-in match is bounded in length (`MAX_BUILTIN_MATCH`).

Compiled once per distinct rule set (`compile_rules` is cached), never per request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import re2

CUSTOM_LABEL = "<masked>"
MAX_BUILTIN_MATCH = 250  # the longest text a built-in can match (an e-mail address)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(ch for ch in text if "0" <= ch <= "9")


def _card_ok(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ssn_ok(text: str) -> bool:
    digits = _digits(text)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return len(digits) == 9 and area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _sin_ok(text: str) -> bool:
    digits = _digits(text)
    return len(digits) == 9 and luhn_ok(digits)


def _phone_ok(text: str) -> bool:
    return 10 <= len(_digits(text)) <= 15


@dataclass(frozen=True)
class Builtin:
    label: str
    pattern: str
    max_len: int  # the longest text the pattern can match
    valid: Callable[[str], bool] | None = None


BUILTINS: dict[str, Builtin] = {
    # 13-19 digits, single spaces or dashes between them allowed; then Luhn.
    "CreditCard": Builtin("<CREDIT_CARD>", r"\b[0-9](?:[ -]?[0-9]){12,18}\b", 37, _card_ok),
    "Ssn": Builtin("<SSN>", r"\b[0-9]{3}[- .][0-9]{2}[- .][0-9]{4}\b|\b[0-9]{9}\b", 11, _ssn_ok),
    "CaSin": Builtin("<CA_SIN>", r"\b[0-9]{3}[- ]?[0-9]{3}[- ]?[0-9]{3}\b", 11, _sin_ok),
    "Email": Builtin(
        "<EMAIL_ADDRESS>", r"[a-zA-Z0-9_.+-]{1,64}@[a-zA-Z0-9-]{1,63}\.[a-zA-Z0-9.-]{1,120}[a-zA-Z0-9]", 250
    ),
    # NANP-style (555) 123-4567 / 555.123.4567 with an optional country code, or +CC and 2-5 groups.
    "PhoneNumber": Builtin(
        "<PHONE_NUMBER>",
        r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)|\b[0-9]{3})[ .-]?[0-9]{3}[ .-]?[0-9]{4}\b"
        r"|\+[0-9]{1,3}(?:[ .-]?[0-9]{2,4}){2,5}\b",
        29,
        _phone_ok,
    ),
}


@dataclass(frozen=True)
class Rule:
    regex: re2._Regexp
    label: str
    valid: Callable[[str], bool] | None


Span = tuple[int, int, str]  # (start, end, mask label)


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules of one regex guard.

    `prefilter` is an RE2 set of every rule's pattern: one linear pass over the UTF-8 text
    says which rules match anywhere, so a clean text (the common case) costs one scan
    whatever the number of rules, and only the rules that hit are run for positions.
    """

    rules: tuple[Rule, ...]
    max_match: int | None  # the longest text any rule can match; None: unbounded (custom patterns)
    prefilter: Any = None  # re2.Set over the rules' patterns

    @property
    def bounded(self) -> bool:
        """Built-ins only: no anchors, bounded matches (texts may be joined with newlines for one scan)."""
        return self.max_match is not None

    def hits(self, text: str) -> bool:
        """Whether any rule matches anywhere in `text` (one pass)."""
        return bool(self.prefilter.Match(text.encode("utf-8", "surrogatepass")))

    def spans(self, text: str, pos: int = 0) -> list[Span]:
        """Non-empty matches starting at or after `pos`, merged where they overlap, in order.

        Text before `pos` is context only (word boundaries see it).
        """
        data = text.encode("utf-8", "surrogatepass")
        hits = self.prefilter.Match(data) if self.prefilter is not None else None
        if not hits:
            return []
        # ASCII text (the common case): byte offsets are character offsets, and RE2 runs on the
        # bytes without the wrapper's str-offset bookkeeping (about 3x faster).
        subject: str | bytes = data if len(data) == len(text) else text
        found: list[Span] = []
        for index in sorted(hits):
            rule = self.rules[index]
            for m in rule.regex.finditer(subject, pos):
                start, end = m.span()
                if end > start and (rule.valid is None or rule.valid(text[start:end])):
                    found.append((start, end, rule.label))
        if len(found) < 2:
            return found
        found.sort(key=lambda s: (s[0], -s[1]))
        merged = [found[0]]
        for start, end, label in found[1:]:
            last = merged[-1]
            if start < last[1]:
                merged[-1] = (last[0], max(last[1], end), last[2])
            else:
                merged.append((start, end, label))
        return merged

    def mask(self, text: str) -> str | None:
        """`text` with every match replaced by its label; None when nothing matched."""
        spans = self.spans(text)
        return apply(text, spans) if spans else None

    def matches(self, text: str) -> bool:
        return bool(self.spans(text))


def apply(text: str, spans: list[Span]) -> str:
    out: list[str] = []
    at = 0
    for start, end, label in spans:
        out.append(text[at:start])
        out.append(label)
        at = end
    out.append(text[at:])
    return "".join(out)


@lru_cache(maxsize=256)
def compile_rules(builtins: tuple[str, ...], patterns: tuple[str, ...]) -> RuleSet:
    """RE2-compiled rules (validated by the control plane; an unknown built-in raises KeyError).

    RE2 is imported on the first regex guard: a worker without one does not map it (~0.7 MiB).
    """
    import re2

    options = re2.Options()
    options.max_mem = 8 << 20
    rules = [Rule(re2.compile(BUILTINS[b].pattern, options), BUILTINS[b].label, BUILTINS[b].valid) for b in builtins]
    rules.extend(Rule(re2.compile(p, options), CUSTOM_LABEL, None) for p in patterns)
    prefilter = re2.Set.SearchSet(options)
    for rule in rules:
        prefilter.Add(rule.regex.pattern)
    prefilter.Compile()
    max_match = None if patterns else max((BUILTINS[b].max_len for b in builtins), default=0)
    return RuleSet(rules=tuple(rules), max_match=max_match, prefilter=prefilter)
