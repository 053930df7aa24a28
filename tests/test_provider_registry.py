"""One provider registry: the control plane's kinds, the extproc's modules and the CRD schema agree.

`controlplane/gatewayapi/provider_kinds.py` KINDS is the source; a kind added
there without its extproc module or its CRD block (or the other way round)
fails here instead of being accepted by one process and unknown to another.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from controlplane.gatewayapi.provider_kinds import KINDS
from extproc.operations import OPERATIONS_BY_NAME
from extproc.providers import PROVIDERS

REPO = Path(__file__).resolve().parent.parent


def _crd_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("crd_generate", REPO / "crds" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extproc_has_a_module_for_every_kind_and_no_other() -> None:
    assert set(PROVIDERS) == set(KINDS)


def test_crd_schema_names_every_kind_and_no_other() -> None:
    assert set(_crd_generator().provider_kinds()) == set(KINDS)


def test_every_provider_module_declares_the_protocol() -> None:
    # mypy checks the modules against ProviderModule through PROVIDERS' type; this holds at run time.
    for kind, module in PROVIDERS.items():
        for name in ("api", "path"):
            assert callable(getattr(module, name, None)), f"{kind}: {name}"
        assert isinstance(module.input_includes_cached, bool), kind
        assert isinstance(module.operations, frozenset) and module.operations, kind
        assert module.operations <= set(OPERATIONS_BY_NAME) - {"models"}, kind  # the gateway answers models


def test_direct_kinds_are_the_openai_compatible_ones() -> None:
    # A direct route skips the attempt stage: only kinds that speak OpenAI's wire format upstream.
    assert {k for k, v in KINDS.items() if v.direct} == {"openai", "custom", "azureopenai", "azure"}
