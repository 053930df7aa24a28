"""JSON Schema (as OpenAI clients write it) -> the OpenAPI subset Gemini accepts in `Schema`.

Gemini's `functionDeclarations[].parameters` and `generationConfig.responseSchema` take a
`Schema` object, an OpenAPI 3.0 subset. Schemas produced by Pydantic, zod or the openai
SDK's strict mode carry keywords Gemini rejects with a 400 ("Unknown name
additionalProperties", "$ref", "$defs", "const", type arrays ...). Both Envoy AI Gateway
and agentgateway rewrite the schema before sending it; this is our version of that
rewrite, kept pure and separate so it can be tested on its own:

- `$ref` into top-level `$defs`/`definitions` is inlined (a recursive reference is cut to
  a plain object, since `Schema` cannot express recursion);
- `allOf` is merged into its parent; `const` becomes a one-value `enum`;
- `type: [X, "null"]` and `anyOf` with a `{"type": "null"}` member become `nullable`;
- `enum` is kept on strings only (Gemini's enums are string enums); `format` only where
  Gemini knows it; arrays without `items` get one;
- every other keyword not in `ALLOWED` is dropped (e.g. `additionalProperties`,
  `$schema`, `examples`, `strict`), recursively through `properties`, `items`, `anyOf`.
"""

from __future__ import annotations

from typing import Any

ALLOWED = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "propertyOrdering",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "default",
        "example",
    }
)
# `format` values Gemini's Schema documents: date-time for strings, int32/int64, float/double, enum.
_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})
_MAX_DEPTH = 64


def to_gemini(schema: Any) -> Any:
    """A cleaned deep copy of `schema` (the input is never modified, so retries see the same body)."""
    if not isinstance(schema, dict):
        return schema
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        value = schema.get(key)
        if isinstance(value, dict):
            defs.update(value)
    return _clean(schema, defs, (), 0)


def _resolve(
    node: dict[str, Any], defs: dict[str, Any], chain: tuple[str, ...]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Follow `$ref` chains; sibling keys of the reference win over the target's."""
    while isinstance(node.get("$ref"), str):
        name = node["$ref"].rsplit("/", 1)[-1]
        target = defs.get(name)
        if name in chain or not isinstance(target, dict):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {"type": "object", **rest}, chain
        chain = (*chain, name)
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node, chain


def _const_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def _is_null(member: Any) -> bool:
    return isinstance(member, dict) and member.get("type") == "null"


def _flatten(node: dict[str, Any], defs: dict[str, Any], chain: tuple[str, ...]) -> dict[str, Any]:
    """Structural rewrites on one node until nothing changes (each may expose another)."""
    node = dict(node)
    for _ in range(_MAX_DEPTH):
        changed = False
        members = node.pop("allOf", None)
        if isinstance(members, list):
            changed = True
            for member in members:
                if isinstance(member, dict):
                    member, _ = _resolve(member, defs, chain)
                    for key, value in member.items():
                        node.setdefault(key, value)
        if "const" in node:
            changed = True
            value = node.pop("const")
            node["enum"] = [value]
            node.setdefault("type", _const_type(value))
        types = node.get("type")
        if isinstance(types, list):
            changed = True
            names = [t for t in types if isinstance(t, str)]
            if "null" in names:
                node["nullable"] = True
            rest = [t for t in names if t != "null"]
            del node["type"]
            if len(rest) == 1:
                node["type"] = rest[0]
            elif rest:
                node["anyOf"] = [{"type": t} for t in rest]
        any_of = node.get("anyOf")
        if isinstance(any_of, list) and (len(any_of) == 1 or any(_is_null(m) for m in any_of)):
            changed = True
            del node["anyOf"]
            if any(_is_null(m) for m in any_of):
                node["nullable"] = True
            rest = [m for m in any_of if not _is_null(m)]
            if len(rest) == 1 and isinstance(rest[0], dict):
                member, _ = _resolve(rest[0], defs, chain)
                for key, value in member.items():
                    node.setdefault(key, value)
            elif rest:
                node["anyOf"] = rest
        if not changed:
            break
    return node


def _clean(node: Any, defs: dict[str, Any], chain: tuple[str, ...], depth: int) -> Any:
    if not isinstance(node, dict):
        return node
    if depth > _MAX_DEPTH:
        return {"type": "object"}
    node, chain = _resolve(node, defs, chain)
    node = _flatten(node, defs, chain)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in ALLOWED:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _clean(sub, defs, chain, depth + 1) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _clean(value, defs, chain, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [_clean(sub, defs, chain, depth + 1) for sub in value]
        else:
            out[key] = value
    kind = out.get("type")
    if "enum" in out:
        if kind is None:
            out["type"] = "string"
        elif kind != "string":
            del out["enum"]
        else:
            out["enum"] = [str(v) for v in out["enum"]] if isinstance(out["enum"], list) else out["enum"]
    if "format" in out and out["format"] not in _FORMATS:
        del out["format"]
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {"type": "string"}
    if "type" not in out and "anyOf" not in out:
        out["type"] = "object"
    if isinstance(out.get("required"), list) and isinstance(out.get("properties"), dict):
        out["required"] = [name for name in out["required"] if name in out["properties"]]
    return out
