"""Upstream header mutation: a provider's copy of the attempt stage's marker header is removed.

The attempt stage marks the errors it answers itself (already in the client's
schema) with `x-llmgw-answered`, and the router stage passes those through
untranslated. A provider (or anything on the way to it) sending that header
would otherwise skip the translation of its own answer. This filter sits
between the attempt stage and the upstream codec, so it sees every response
that came from upstream and none of the attempt stage's own replies (a local
reply of an upstream filter only passes the filters before it).
"""

from __future__ import annotations

from typing import Any

from controlplane.xds.common import TYPE_PREFIX as _T
from extproc import wire

FILTER_NAME = "llmgw.strip_answered_marker"


def strip_answered_marker_filter() -> dict[str, Any]:
    return {
        "name": FILTER_NAME,
        "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"response_mutations": [{"remove": wire.ANSWERED_HEADER}]},
        },
    }
