"""agentgateway's standalone config file -> the resources llmgw reads, for `llmgw run -f` / `validate -f`.

Users of agentgateway's binary write one YAML file instead of Kubernetes
manifests: `binds` (ports, listeners, routes), or named `gateways` with
top-level `routes`, or the simplified `llm.models` list. This package turns
such a document into the Gateway, HTTPRoute, AgentgatewayBackend and Secret
objects the Gateway API stage already understands, rather than into IR
directly, so there is one path to the IR and the fields both formats share
(host/path overrides, credentials, TLS, timeouts) are read by the same code
(controlplane/gatewayapi/backends.py). Every field it does not translate is a
problem naming its path in the file ("... is not supported by llmgw"), and
`relocate` points problems found later on the generated objects back at the
user's fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controlplane.agwlocal.context import Out, join, relocate
from controlplane.agwlocal.llm import llm
from controlplane.agwlocal.routes import attached_routes, binds, gateways
from controlplane.resources import Problem, Resource

__all__ = ["relocate", "translate_local_config"]

_TOP_FIELDS = ("binds", "gateways", "routes", "llm", "backends")
_NAMED_BACKEND_FIELDS = ("name", "ai", "policies")


def translate_local_config(doc: Mapping[str, Any], *, file: str, document: int) -> tuple[list[Resource], list[Problem]]:
    """One config document -> (generated resources, problems naming the document's fields)."""
    stem = re.sub(r"[^a-z0-9-]+", "-", Path(file).stem.lower()).strip("-")[:40] or "agw"
    out = Out(file=file, document=document, base=stem + (f"-{document}" if document > 1 else ""))
    out.unknown("", doc, _TOP_FIELDS, expand=True)
    named = _named_backends(out, doc.get("backends"))
    if "binds" in doc:
        binds(out, doc["binds"], named=named)
    refs = gateways(out, doc["gateways"]) if "gateways" in doc else {}
    if "routes" in doc:
        attached_routes(out, doc["routes"], refs, named=named)
    if "llm" in doc:
        llm(out, doc["llm"], refs)
    return out.resources, out.problems


def _named_backends(out: Out, raw: Any) -> dict[str, tuple[Any, str, Any, str]]:
    """Top-level `backends: [{name, ai, policies}]` that routes name with `backend: <name>`."""
    named: dict[str, tuple[Any, str, Any, str]] = {}
    for i, backend in enumerate(out.items("backends", raw)):
        where = f"backends[{i}]"
        b = out.mapping(where, backend)
        if b is None:
            continue
        out.unknown(where, b, _NAMED_BACKEND_FIELDS)
        name = b.get("name")
        if not isinstance(name, str) or not name:
            out.fail(join(where, "name"), "is required (a string)")
            continue
        if "ai" not in b:
            continue  # host, mcp, ...: reported by unknown() above
        named[name] = (b["ai"], join(where, "ai"), b.get("policies"), join(where, "policies"))
    return named
