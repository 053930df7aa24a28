"""Render the chart's templates where no `helm` binary can be installed (none is packaged for PyPI or Debian).

A strict subset of Helm's Go templates, exactly what charts/llmgw uses:
`{{ .Values.a.b }}`, `.Release.*`, `.Chart.*`, pipelines with `quote`,
`default`, `toYaml`, `nindent`, `{{- if }} / {{- else }} / {{- end }}`,
comments, and whitespace trimming (`{{-`, `-}}`). Anything else raises, so a
template that uses more fails this renderer loudly instead of rendering wrong;
`helm lint` / `helm template` remain the reference where Helm exists.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)


class TemplateError(ValueError):
    pass


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _lookup(path: str, scope: Mapping[str, Any]) -> Any:
    if not path.startswith("."):
        raise TemplateError(f"unsupported operand {path!r}")
    value: Any = scope
    for part in path[1:].split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _operand(token: str, scope: Mapping[str, Any]) -> Any:
    if token.startswith('"'):
        return token.strip('"')
    if token.isdigit():
        return int(token)
    return _lookup(token, scope)


def _call(words: list[str], scope: Mapping[str, Any], piped: tuple[Any] | tuple[()]) -> Any:
    name, args = words[0], [_operand(w, scope) for w in words[1:]] + list(piped)
    if name.startswith("."):
        if len(words) != 1 or piped:
            raise TemplateError(f"unsupported call {' '.join(words)!r}")
        return _lookup(name, scope)
    if name == "quote" and len(args) == 1:
        return '"' + str(args[0]).replace('"', '\\"') + '"'
    if name == "default" and len(args) == 2:
        return args[1] if _truthy(args[1]) else args[0]
    if name == "toYaml" and len(args) == 1:
        return yaml.safe_dump(args[0], default_flow_style=False, sort_keys=False).rstrip("\n")
    if name == "nindent" and len(args) == 2:
        pad = " " * int(args[0])
        return "\n" + "\n".join(pad + line if line else line for line in str(args[1]).split("\n"))
    raise TemplateError(f"unsupported function {name!r} with {len(args)} argument(s)")


def _pipeline(expr: str, scope: Mapping[str, Any]) -> Any:
    value: tuple[Any] | tuple[()] = ()
    for stage in expr.split("|"):
        words = shlex.split(stage, posix=False)
        if not words:
            raise TemplateError(f"empty pipeline stage in {expr!r}")
        value = (_call(words, scope, value),)
    return value[0]


def _tokens(text: str) -> list[tuple[str, str]]:
    """('text', s) and ('action', expr) with Helm's whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        out.append(("text", chunk))
        out.append(("action", m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def render_text(text: str, scope: Mapping[str, Any]) -> str:
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # per open `if`: (the enclosing block renders, its condition held)
    active = True
    for kind, value in _tokens(text):
        if kind == "text":
            if active:
                out.append(value)
        elif value.startswith("/*"):
            if not value.endswith("*/"):
                raise TemplateError(f"unterminated comment {value!r}")
        elif value.startswith("if "):
            held = active and _truthy(_pipeline(value[3:], scope))
            stack.append((active, held))
            active = held
        elif value == "else":
            if not stack:
                raise TemplateError("else without if")
            outer, held = stack[-1]
            active = outer and not held
        elif value == "end":
            if not stack:
                raise TemplateError("end without if")
            active = stack.pop()[0]
        elif active:
            rendered = _pipeline(value, scope)
            out.append("" if rendered is None else str(rendered))
    if stack:
        raise TemplateError("if without end")
    return "".join(out)


def render_chart(chart: Path, *, values: Mapping[str, Any] | None = None, namespace: str = "llmgw-system") -> str:
    """All templates (not NOTES.txt) rendered as `helm template` would, joined into one YAML stream."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    merged = _merge(yaml.safe_load((chart / "values.yaml").read_text()) or {}, dict(values or {}))
    scope = {
        "Values": merged,
        "Release": {"Name": "llmgw", "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
    }
    docs = []
    for template in sorted((chart / "templates").glob("*.yaml")):
        docs.append(
            f"---\n# Source: {chart.name}/templates/{template.name}\n" + render_text(template.read_text(), scope)
        )
    return "\n".join(docs)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out
