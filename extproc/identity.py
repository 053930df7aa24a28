"""Who is calling: the one shape every policy module reads (authn writes it, limits, metrics,
the access log and upstream headers read it).

An identity never holds the client's key, only a stable id derived from it
(`key_id`, e.g. the Secret/ConfigMap entry name or a short hash prefix), so it
can be logged, labelled and used as a limit descriptor without leaking a secret.
`None` for `Identity` itself means anonymous (no credential, `Optional` mode).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    source: str  # "apikey" | "jwt": which authenticator vouched for this caller
    key_id: str  # stable, non-secret id of the credential (key entry name / JWT subject)
    user: str | None = None
    team: str | None = None
    tenant: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # any further metadata, sorted by name

    def field(self, name: str) -> str | None:
        """A named attribute for limit descriptors, metric labels and headers (None: unknown)."""
        if name in ("user", "team", "tenant", "key_id", "source"):
            value: str | None = getattr(self, name)
            return value
        return dict(self.labels).get(name)
