"""Files -> resources -> IR -> (Envoy protos, extproc config): the whole pure pipeline.

`llmgw validate`, `llmgw run` (at start and on every file change) and the
tests all go through `compile_paths`, so what validate accepts is exactly
what run would apply.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane import extproc_config
from controlplane.agwlocal import relocate
from controlplane.gatewayapi import translate as translate_resources
from controlplane.ir import DEFAULT_MAX_BODY_BYTES, IR
from controlplane.limits import Limits
from controlplane.resources import Problem, load_files
from controlplane.xds.cluster import SYSTEM_CA_FILE
from controlplane.xds.tracing import TracingSettings
from controlplane.xds.translate import EnvoyResources, to_protos
from controlplane.xds.translate import translate as translate_ir
from extproc.contract import ExtprocConfig


@dataclass
class Compiled:
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # informational: read, deliberately not applied
    ir: IR | None = None
    envoy: EnvoyResources | None = None
    protos: dict[str, list[Message]] | None = None
    extproc: ExtprocConfig | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.protos is not None


def compile_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    environ: Mapping[str, str] | None = None,
    listen_address: str = "0.0.0.0",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    limits: Limits | None = None,
    pause_oracle: tuple[str, int] | None = None,
    tracing: TracingSettings | None = None,
) -> Compiled:
    """`pause_oracle`: where the running gateway answers Retry-After pause checks (xds.translate)."""
    resources, problems = load_files(paths)
    out = Compiled(problems=list(problems))
    translation = translate_resources(
        resources, environ=environ, listen_address=listen_address, max_body_bytes=max_body_bytes
    )
    out.problems.extend(translation.problems)
    # Problems on objects generated from agentgateway's config name the user's field instead.
    out.problems = relocate(out.problems, resources)
    out.notes.extend(translation.notes)
    out.ir = translation.ir
    # Envoy reads no SSL_CERT_FILE of its own: honour the usual OpenSSL variable for the trust store.
    ca_file = (os.environ if environ is None else environ).get("SSL_CERT_FILE") or SYSTEM_CA_FILE
    out.envoy = translate_ir(
        translation.ir, limits=limits, pause_oracle=pause_oracle, system_ca_file=ca_file, tracing=tracing
    )
    try:
        out.protos = to_protos(out.envoy, ir=translation.ir)
    except json_format.ParseError as exc:  # a bug in our translation, not the user's input
        out.problems.append(Problem("", "configuration", "", f"internal: generated invalid Envoy config: {exc}"))
        return out
    out.extproc = extproc_config.build(translation.ir)
    if not resources and not problems:
        out.problems.append(Problem("", "input", "", "no manifests found"))
    return out
