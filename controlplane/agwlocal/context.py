"""What the agentgateway-config translators share: where problems go, how generated objects are named.

A generated object remembers which part of the user's file it came from
(`Resource.origin`), so a problem the Gateway API stage finds on it later is
reported against the user's field (see `relocate`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.resources import Problem, Resource

GATEWAY_API = "gateway.networking.k8s.io/v1"
AGW_API = "agentgateway.dev/v1alpha1"
GATEWAY_CLASS = "llmgw"
UNSUPPORTED = "is not supported by llmgw"
_NOT_NAME = re.compile(r"[^a-z0-9-]+")
# `$VAR` as agentgateway writes it (it expands the whole file like a shell); Secrets expand `${VAR}`.
_BARE_VAR = re.compile(r"\$(?!\{)([A-Za-z_][A-Za-z0-9_]*)")


def config_object(document: int) -> str:
    """How problems name the config file's document (the "object" part of a Problem)."""
    return f"agentgateway config (document {document})" if document > 1 else "agentgateway config"


@dataclass
class Out:
    """The objects generated from one config document, and the problems found on the way."""

    file: str
    document: int
    base: str  # prefix of every generated name, from the file name
    resources: list[Resource] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    names: set[tuple[str, str]] = field(default_factory=set)

    @property
    def obj(self) -> str:
        return config_object(self.document)

    def fail(self, fld: str, message: str, reason: str = "Invalid") -> None:
        self.problems.append(Problem(self.file, self.obj, fld, message, reason))

    def unsupported(self, fld: str, why: str = "") -> None:
        self.fail(fld, UNSUPPORTED + (f": {why}" if why else ""), "Unsupported")

    def unknown(self, where: str, block: Any, known: Collection[str], *, expand: bool = False) -> None:
        """A problem for each field of `block` that is not in `known` (it would be dropped otherwise).

        `expand`: name each field inside an unknown block (`config.statsAddr`, not `config`).
        """
        if not isinstance(block, Mapping):
            return
        for key in block:
            if key in known:
                continue
            value = block[key]
            if expand and isinstance(value, Mapping) and value:
                for sub in value:
                    self.unsupported(join(join(where, str(key)), str(sub)))
            else:
                self.unsupported(join(where, str(key)))

    def mapping(self, where: str, value: Any) -> Mapping[str, Any] | None:
        """`value` if it is a mapping (None counts as empty); else a problem and None."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(where, "must be a mapping")
            return None
        return value

    def items(self, where: str, value: Any) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, "must be a list")
            return []
        return value

    def name(self, *parts: object) -> str:
        """A DNS-label name for a generated object, starting with the file's base name."""
        raw = "-".join([self.base, *(str(p) for p in parts if p != "")]).lower()
        return _NOT_NAME.sub("-", raw).strip("-")[:63].rstrip("-") or "agw"

    def unique(self, kind: str, name: str) -> str:
        candidate, n = name, 1
        while (kind, candidate) in self.names:
            n += 1
            candidate = f"{name[:58]}-{n}"
        self.names.add((kind, candidate))
        return candidate

    def emit(
        self,
        *,
        api_version: str,
        kind: str,
        name: str,
        body: Mapping[str, Any],
        origin: list[tuple[str, str]],
        namespace: str = "default",
    ) -> Resource:
        doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}, **body}
        res = Resource(
            api_version=api_version,
            kind=kind,
            name=name,
            namespace=namespace,
            body=doc,
            file=self.file,
            document=self.document,
            origin=tuple(origin),
        )
        self.resources.append(res)
        return res

    def secret(self, name: str, data: Mapping[str, str], origin: list[tuple[str, str]]) -> str:
        """A Secret holding credentials written inline; `$VAR` and `${VAR}` come from the environment."""
        name = self.unique("Secret", name)
        string_data = {k: _BARE_VAR.sub(r"${\1}", v) for k, v in data.items()}
        self.emit(api_version="v1", kind="Secret", name=name, body={"stringData": string_data}, origin=origin)
        return name


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def string(out: Out, where: str, value: Any) -> str | None:
    """A non-empty string, or a problem and None."""
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        out.fail(where, "must be a non-empty string")
        return None
    return str(value)


def relocate(problems: list[Problem], resources: list[Resource]) -> list[Problem]:
    """Problems found on generated objects, pointed back at the config field they came from.

    Echoes are dropped: a generated route's "backend not found" when that backend's own
    problems are reported, and a problem inside a field that already has one (an empty
    key after its environment variable was reported missing).
    """
    generated = {(r.file, r.ref): r for r in resources if r.origin}
    if not generated:
        return problems
    moved: list[tuple[Problem, bool]] = []
    for p in problems:
        res = generated.get((p.file, p.obj))
        if res is None:
            moved.append((p, False))
            continue
        fld = _map_field(p.field, res.origin)
        moved.append((Problem(p.file, config_object(res.document), fld, p.message, p.reason), True))

    def same_doc(p: Problem) -> list[Problem]:
        return [q for q, m in moved if m and q is not p and q.file == p.file and q.obj == p.obj]

    moved = [
        (p, m)
        for p, m in moved
        if not (m and p.reason == "BackendNotFound" and p.message.endswith("not found or invalid") and same_doc(p))
    ]
    return [p for p, m in moved if not (m and any(q.field and p.field.startswith(q.field + ".") for q in same_doc(p)))]


def _map_field(fld: str, origin: tuple[tuple[str, str], ...]) -> str:
    best: tuple[str, str] | None = None
    for prefix, source in origin:
        hit = not prefix or fld == prefix or fld.startswith((prefix + ".", prefix + "["))
        if hit and (best is None or len(prefix) > len(best[0])):
            best = (prefix, source)
    if best is None:
        return fld
    prefix, source = best
    return source + fld[len(prefix) :] if prefix else source
