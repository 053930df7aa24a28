"""ReferenceGrant: which cross-namespace references the owner of the target namespace allows.

A reference from an object in namespace A to one in namespace B is permitted
only when a ReferenceGrant in B lists A's (group, kind, namespace) in `from`
and the target's (group, kind[, name]) in `to` (Gateway API, v1beta1 and v1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.resources import Problem, Resource


@dataclass(frozen=True)
class ReferenceGrants:
    # (from group, from kind, from namespace, to namespace, to group, to kind, to name or None for any)
    entries: frozenset[tuple[str, str, str, str, str, str, str | None]] = field(default_factory=frozenset)

    def permits(
        self, *, from_group: str, from_kind: str, from_ns: str, to_ns: str, to_group: str, to_kind: str, to_name: str
    ) -> bool:
        if from_ns == to_ns:
            return True
        base = (from_group, from_kind, from_ns, to_ns, to_group, to_kind)
        return (*base, None) in self.entries or (*base, to_name) in self.entries


def read_grants(resources: Iterable[Resource]) -> tuple[ReferenceGrants, list[Problem]]:
    entries: set[tuple[str, str, str, str, str, str, str | None]] = set()
    problems: list[Problem] = []
    for res in resources:
        froms = _peers(res, "from", ("group", "kind", "namespace"), problems)
        tos = _peers(res, "to", ("group", "kind"), problems)
        for f in froms:
            for t in tos:
                name = t.get("name")
                entries.add((f["group"], f["kind"], f["namespace"], res.namespace, t["group"], t["kind"], name))
    return ReferenceGrants(frozenset(entries)), problems


def _peers(res: Resource, key: str, required: tuple[str, ...], problems: list[Problem]) -> list[dict[str, Any]]:
    items = res.spec.get(key)
    if not isinstance(items, list) or not items:
        problems.append(Problem(res.file, res.ref, f"spec.{key}", "must be a non-empty list"))
        return []
    out = []
    for i, item in enumerate(items):
        fld = f"spec.{key}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(res.file, res.ref, fld, "must be a mapping"))
            continue
        bad = next((k for k in required if not isinstance(item.get(k), str)), None)
        if bad is None and item.get("name") is not None and not isinstance(item["name"], str):
            bad = "name"
        if bad is not None:
            problems.append(Problem(res.file, res.ref, f"{fld}.{bad}", 'must be a string (the core group is "")'))
            continue
        out.append({k: item[k] for k in required} | {"name": item.get("name") or None})
    return out
