"""CEL for `policies.ai` transformations: compiled once per config, one context per request.

The library is `common-expression-language` (Rust `cel` crate bindings), chosen over the
pure-Python `cel-python` on measurements (bench/transforms.py): 0.5-1 µs per evaluation
against a context built once per request, against 125-200 µs with cel-python; converting
the body into CEL values costs about the same with both (~33 µs for 2.5 KB, ~200 µs for
38 KB), which is why a context holds only the body fields the expressions read.

The variables follow agentgateway's CEL context for LLM request transformations:
`llmRequest` (the JSON request body) and `request` with `method`, `path`, `pathAndQuery`,
`host`, `scheme` and `headers` (lower-case names; several values joined by ","). The rest
of agentgateway's context (`jwt`, `apiKey`, `source`, `backend`, `llm`, ...) and its
extension functions (`min`, `with`, string `split`, ...) are not available: the control
plane reports an expression that uses them as unsupported.
"""

from __future__ import annotations

import datetime
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

VARIABLES = ("llmRequest", "request")
REQUEST_FIELDS = ("method", "path", "pathAndQuery", "host", "scheme", "headers")
# agentgateway's other top-level CEL variables: an expression reading one cannot be honoured here.
UNSUPPORTED_VARIABLES = frozenset(
    {
        "apiKey",
        "backend",
        "basicAuth",
        "destination",
        "extauthz",
        "extproc",
        "jwt",
        "llm",
        "mcp",
        "mcpGuardrails",
        "metadata",
        "proxy",
        "response",
        "source",
    }
)


@cache
def _cel() -> ModuleType:
    """The library, imported on first use (a worker whose config has no CEL does not load it).

    The package's __init__ imports `cel.cli`, an interactive REPL (prompt_toolkit, rich,
    pygments: ~12 MiB of RSS and ~0.1 s per process), none of it used: a placeholder module
    stands in for it (the evaluator is the Rust extension, `cel.cel`).
    """
    sys.modules.setdefault("cel.cli", ModuleType("cel.cli"))
    import cel

    return cel


_REQUEST_FIELD = re.compile(r"\brequest\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


class CelProblem(ValueError):
    """An expression llmgw cannot compile or cannot give the variables it reads."""


@dataclass(frozen=True)
class Expression:
    source: str
    program: Any  # cel.Program
    reads_request: bool  # needs the `request` variable (else only llmRequest is built)
    # The top-level body fields it reads as `llmRequest.<field>` (None: it uses the body otherwise,
    # e.g. `llmRequest['x']` or `size(llmRequest)`, and gets all of it). Converting the body into
    # CEL values is most of the cost, so a context holds only what is read.
    body_fields: frozenset[str] | None = None
    # The `request.<field>`s it reads (None: all of them); the headers map alone costs ~13 µs.
    request_fields: frozenset[str] | None = None


def compile_expression(source: str) -> Expression:
    """Compile `source` once; CelProblem says why it cannot be used."""
    try:
        program = _cel().compile(source)
    except ValueError as exc:
        raise CelProblem(f"is not a valid CEL expression: {exc}") from None
    names = set(program.variables())
    unsupported = sorted(names & UNSUPPORTED_VARIABLES)
    if unsupported:
        raise CelProblem(
            f"reads {', '.join(unsupported)}, which llmgw does not provide to CEL (it has {', '.join(VARIABLES)})"
        )
    fields = sorted({m for m in _REQUEST_FIELD.findall(source) if m not in REQUEST_FIELDS})
    if "request" in names and fields:
        raise CelProblem(
            f"reads request.{', request.'.join(fields)}; llmgw provides request.{', request.'.join(REQUEST_FIELDS)}"
        )
    read = _BODY_FIELD.findall(source)
    whole = len(_BODY_ANY.findall(source)) > len(read)
    request_read = _REQUEST_FIELD.findall(source)
    whole_request = len(_REQUEST_ANY.findall(source)) > len(request_read)
    return Expression(
        source=source,
        program=program,
        reads_request="request" in names,
        body_fields=None if whole else frozenset(read),
        request_fields=None if whole_request else frozenset(request_read),
    )


_BODY_FIELD = re.compile(r"\bllmRequest\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_BODY_ANY = re.compile(r"\bllmRequest\b")
_REQUEST_ANY = re.compile(r"\brequest\b")


def body_fields(expressions: list[Expression]) -> frozenset[str] | None:
    """The body fields a set of expressions reads (None: the whole body)."""
    return _union([e.body_fields for e in expressions])


def request_fields(expressions: list[Expression]) -> frozenset[str] | None:
    """The `request` fields a set of expressions reads (None: all of them)."""
    return _union([e.request_fields for e in expressions if e.reads_request])


def _union(sets: list[frozenset[str] | None]) -> frozenset[str] | None:
    out: set[str] = set()
    for fields in sets:
        if fields is None:
            return None
        out |= fields
    return frozenset(out)


def context(
    *,
    body: Mapping[str, Any],
    request: Mapping[str, Any] | None,
    fields: frozenset[str] | None = None,
    request_fields: frozenset[str] | None = None,
) -> Any:
    """The variables of one request, converted once and shared by all its expressions.

    `fields` / `request_fields`: only these top-level body / request fields are given
    (`body_fields`, `request_fields`); None: all of them.
    """
    ctx = _cel().Context()
    ctx.add_variable("llmRequest", body if fields is None else {k: body[k] for k in fields if k in body})
    if request is not None:
        narrowed = request if request_fields is None else {k: request[k] for k in request_fields if k in request}
        ctx.add_variable("request", narrowed)
    return ctx


class _NoJson(Exception):
    pass


def evaluate(expr: Expression, ctx: Any) -> tuple[bool, Any]:
    """(True, JSON value) or (False, None) when evaluation fails or yields what JSON cannot hold.

    agentgateway removes the field when an expression fails; the caller does the same.
    """
    try:
        return True, _json(expr.program.execute(ctx))
    except Exception:  # the library raises KeyError, TypeError, RuntimeError, ... per CEL error
        return False, None


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NoJson
        return value
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, datetime.datetime):  # CEL timestamp: RFC 3339, as agentgateway serializes it
        return value.isoformat().replace("+00:00", "Z")
    raise _NoJson
