"""Turn the upstream conformance tests' Go expectations into expectations.json (run by hand when re-vendoring).

`upstream/` holds files of kubernetes-sigs/gateway-api (Apache-2.0) at the commit in
UPSTREAM_COMMIT, copied verbatim: each test's manifest (`<test>.yaml`), its Go test
(`<test>.go.txt`) and `base-manifests.yaml`. This script reads the `testCases` literals of
the Go tests (`[]http.ExpectedResponse{...}`, including `append`ed ones) and rewrites
them as JSON, field names unchanged, so tests/test_conformance.py checks exactly what the
upstream suite checks. A literal it cannot read is an error, not a silent skip.

    python tests/conformance/extract.py
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream"
UPSTREAM_COMMIT = "4564255ac2c35d582249b3cdf261bdf51c8bca32"
NAMESPACE = "gateway-conformance-infra"
_START = re.compile(r"(?:testCases\s*:?=\s*|append\(testCases,\s*)\[\]http\.ExpectedResponse\{")
_GATEWAY = re.compile(r'gwNN\s*:?=\s*types\.NamespacedName\{[^}]*Name:\s*"([\w-]+)"')
# `testCases = append(testCases, http.ExpectedResponse{...}, ...)`: one element per argument.
_APPEND_ITEMS = re.compile(r"append\(testCases,(?=\s*(?://[^\n]*\n\s*)*http\.ExpectedResponse\{)")


def _balanced(text: str, start: int, pair: str = "{}") -> str:
    """The text from the opening bracket at `start` to its match (strings respected)."""
    opening, closing = pair
    depth, i, in_str = 0, start, False
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    raise ValueError("unbalanced braces")


def _to_python(block: str) -> list[dict[str, Any]]:
    text = "\n".join(line for line in block.splitlines() if not line.strip().startswith("//"))
    text = re.sub(r"&?(?:http|roundtripper)\.\w+\{", "{", text)
    text = re.sub(r"map\[string\]string\{", "{", text)
    text = re.sub(r"\[\](?:string|int)\{([^{}]*)\}", r"[\1]", text)
    text = re.sub(r"confsuite\.InfraBackendServiceNameV(\d)", r'"infra-backend-v\1"', text)
    text = re.sub(r"confsuite\.InfrastructureNamespace|\bns\b", f'"{NAMESPACE}"', text)
    text = re.sub(r"(?<![\"\w])([A-Z]\w*):", r'"\1":', text)
    text = re.sub(r"\btrue\b", "True", text)
    text = re.sub(r"\bfalse\b", "False", text)
    text = "[" + text.strip()[1:-1] + "]"
    value = ast.literal_eval(text)
    assert isinstance(value, list) and all(isinstance(v, dict) for v in value)
    return value


def cases(go: str) -> list[dict[str, Any]]:
    found: list[tuple[int, list[dict[str, Any]]]] = []
    for m in _START.finditer(go):
        found.append((m.start(), _to_python(_balanced(go, m.end() - 1))))
    for m in _APPEND_ITEMS.finditer(go):
        args = _balanced(go, m.start() + len("append"), "()")
        items = args[1:-1].split(",", 1)[1]  # drop the leading `testCases`
        items = re.sub(r"http\.ExpectedResponse\{", "{", items)
        found.append((m.start(), _to_python("{" + items + "}")))
    gateways = [(m.start(), m.group(1)) for m in _GATEWAY.finditer(go)]
    out: list[dict[str, Any]] = []
    for pos, group in sorted(found, key=lambda f: f[0]):
        # The Gateway the requests go to: the test's last `gwNN` before the cases (ours: "_gateway").
        gateway = [name for at, name in gateways if at < pos][-1]
        out.extend({**case, "_gateway": gateway} for case in group)
    return out


def main() -> None:
    tests: dict[str, Any] = {}
    for path in sorted(UPSTREAM.glob("*.go.txt")):
        # One file may define several tests: each `confsuite.ConformanceTest{` starts one.
        for go in path.read_text().split("confsuite.ConformanceTest{")[1:]:
            short = re.search(r'ShortName:\s*"(\w+)"', go)
            assert short is not None, path
            tests[short.group(1)] = {
                "file": path.name.removesuffix(".txt"),
                "manifests": re.findall(r'"tests/([\w.-]+\.yaml)"', go),
                "cases": cases(go),
            }
    out = {"upstream": "github.com/kubernetes-sigs/gateway-api", "commit": UPSTREAM_COMMIT, "tests": tests}
    (HERE / "expectations.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
