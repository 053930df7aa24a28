"""Reading manifests: multi-document YAML files and directories into typed resources.

This is the file provider's first half. It knows YAML and Secrets' encoding,
nothing about Gateway API semantics (that is `gatewayapi`). Every resource
remembers the file it came from so errors can point at it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

YAML_SUFFIXES = (".yaml", ".yml")


class _ManifestLoader(yaml.SafeLoader):
    """SafeLoader that keeps `2024-10-21` a string, as Kubernetes does (e.g. an Azure apiVersion)."""


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is and why."""

    file: str
    obj: str  # "Kind namespace/name" or "document N"
    field: str  # dotted path inside the object, "" for the whole object
    message: str
    reason: str = "Invalid"  # a Gateway API-style condition reason

    def __str__(self) -> str:
        where = f"{self.file}: {self.obj}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Resource:
    """A Kubernetes-shaped object read from a file."""

    api_version: str
    kind: str
    name: str
    namespace: str
    body: Mapping[str, Any] = field(repr=False, compare=False)
    file: str = ""
    creation: str = ""  # metadata.creationTimestamp if given (precedence tie-break)
    document: int = 0  # 1-based position of the document in its file (0: not from a file)
    # Generated from another format (agentgateway's standalone config): (field prefix here, where it
    # was written there), so a problem found on this object names the user's field (agwlocal.relocate).
    origin: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def where(self) -> str:
        """Where the object was written: "file (document N)"."""
        return f"{self.file} (document {self.document})" if self.document else self.file or "input"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def labels(self) -> Mapping[str, str]:
        meta = self.body.get("metadata")
        labels = meta.get("labels") if isinstance(meta, Mapping) else None
        return labels if isinstance(labels, Mapping) else {}

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, Mapping) else {}


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, directories expanded to their YAML files (sorted, recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix in YAML_SUFFIXES and q.is_file()))
        else:
            out.append(p)
    return out


def load_files(
    paths: Iterable[str | os.PathLike[str]], *, default_namespace: str = "default"
) -> tuple[list[Resource], list[Problem]]:
    """Parse every document of every file; unreadable input becomes a Problem, not an exception."""
    resources: list[Resource] = []
    problems: list[Problem] = []
    for path in expand_paths(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(Problem(str(path), "file", "", f"cannot read: {exc.strerror or exc}"))
            continue
        except UnicodeDecodeError as exc:
            problems.append(Problem(str(path), "file", "", f"not UTF-8 (byte {exc.start + 1})"))
            continue
        try:
            docs = list(yaml.load_all(text, Loader=_ManifestLoader))
        except yaml.YAMLError as exc:
            problems.append(Problem(str(path), "file", "", yaml_error(exc)))
            continue
        for index, doc in enumerate(docs, start=1):
            if doc is None:
                continue
            if is_local_config(doc):
                # agentgateway's own config file: read by its translator (imported here, it imports us).
                from controlplane.agwlocal import translate_local_config

                generated, local_problems = translate_local_config(doc, file=str(path), document=index)
                resources.extend(generated)
                problems.extend(local_problems)
                continue
            res, problem = _to_resource(doc, file=str(path), index=index, ns=default_namespace)
            if problem:
                problems.append(problem)
            elif res:
                resources.append(res)
    return resources, problems


# What PyYAML may quote in an error and we repeat: its own token names ('<scalar>') and
# single punctuation or escape characters (',', ']', '\\t'). Anything else it quotes
# (an alias, anchor or tag name, a letter after a backslash) comes from the file.
_YAML_QUOTED = re.compile(r"'([^'\n]*)'")
_YAML_SAFE_QUOTE = re.compile(r"<[a-z ]+>|\\[a-z0]|[^\w\s]")


def yaml_error(exc: yaml.YAMLError) -> str:
    """Why the YAML does not parse and where, never quoting the file.

    PyYAML's own message includes a snippet of the offending line, which in a
    Secret is the key itself; this keeps the line, column and reason only.
    """

    def scrub(text: str) -> str:
        return _YAML_QUOTED.sub(lambda m: m.group(0) if _YAML_SAFE_QUOTE.fullmatch(m.group(1)) else "'…'", text)

    if not isinstance(exc, yaml.MarkedYAMLError):
        return "invalid YAML"
    parts = []
    for what, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if what:
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            parts.append(scrub(str(what)) + where)
    return "invalid YAML: " + ": ".join(parts) if parts else "invalid YAML"


# Top-level keys of agentgateway's standalone config file (its `LocalConfig`); a Kubernetes
# manifest has `kind` and `apiVersion` instead.
LOCAL_CONFIG_KEYS = frozenset(
    {
        "binds", "gateways", "routes", "llm", "backends", "policies", "config", "frontendPolicies",
        "workloads", "services", "routeGroups", "tcpRoutes", "mcp", "ui",
    }
)  # fmt: skip


def is_local_config(doc: Any) -> bool:
    """Whether a YAML document is agentgateway's standalone config rather than a manifest."""
    return (
        isinstance(doc, Mapping)
        and "kind" not in doc
        and "apiVersion" not in doc
        and any(k in doc for k in ("binds", "gateways", "routes", "llm"))
    )


def _to_resource(doc: Any, *, file: str, index: int, ns: str) -> tuple[Resource | None, Problem | None]:
    where = f"document {index}"
    if not isinstance(doc, Mapping):
        return None, Problem(file, where, "", "a manifest must be a mapping")
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        return None, Problem(file, where, "kind", "List documents are not supported; use ---")
    meta = doc.get("metadata")
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        return None, Problem(file, where, "kind", "missing kind")
    if not isinstance(api, str) or not api:
        return None, Problem(file, f"{kind} ({where})", "apiVersion", "missing apiVersion")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        return None, Problem(file, f"{kind} ({where})", "metadata.name", "missing metadata.name")
    namespace = meta.get("namespace") or ns
    if not isinstance(namespace, str):
        return None, Problem(file, f"{kind} ({where})", "metadata.namespace", "must be a string")
    labels = meta.get("labels")
    if labels is not None and not (
        isinstance(labels, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        return None, Problem(
            file, f"{kind} {namespace}/{meta['name']}", "metadata.labels", "must map strings to strings"
        )
    return (
        Resource(
            api_version=api,
            kind=kind,
            name=meta["name"],
            namespace=str(namespace),
            body=doc,
            file=file,
            creation=str(meta.get("creationTimestamp") or ""),
            document=index,
        ),
        None,
    )


def secret_data(secret: Resource, *, environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[Problem]]:
    """Decoded Secret values: `data` (base64) then `stringData` (wins, as in Kubernetes).

    `${VAR}` is expanded from the environment inside Secret values only, so a
    manifest can be committed without the key it uses.
    """
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    problems: list[Problem] = []
    data = secret.body.get("data") or {}
    string_data = secret.body.get("stringData") or {}
    for section, values in (("data", data), ("stringData", string_data)):
        if not isinstance(values, Mapping):
            problems.append(Problem(secret.file, secret.ref, section, "must be a mapping"))
            continue
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                # Kubernetes holds only strings here; str() of a list would reach the provider as
                # "Bearer ['sk-...']". The value is never quoted, only its YAML type.
                problems.append(
                    Problem(
                        secret.file,
                        secret.ref,
                        f"{section}.{key}",
                        f"must be a string, not {_yaml_type(value)} (quote the value in the YAML)",
                    )
                )
                continue
            text = value or ""
            if section == "data":
                try:
                    text = base64.b64decode(text, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    problems.append(Problem(secret.file, secret.ref, f"data.{key}", "is not valid base64 UTF-8"))
                    continue
            expanded, missing = _expand_env(text, env)
            for var in missing:
                problems.append(
                    Problem(
                        secret.file,
                        secret.ref,
                        f"{section}.{key}",
                        f"environment variable {var} is not set",
                    )
                )
            out[str(key)] = expanded
    return out, problems


def _yaml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def header_value_problem(value: str) -> str | None:
    """Why `value` cannot be an HTTP header value (RFC 9110: no control characters but tab), or None.

    Says where, never what: the value is a credential.
    """
    for i, ch in enumerate(value):
        if ch in "\r\n":
            return f"contains a line break (character {i + 1})"
        if (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            return f"contains a control character (character {i + 1})"
    return None


def _expand_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            missing.append(name)
            return ""
        return env[name]

    return _ENV_VAR.sub(sub, text), missing
