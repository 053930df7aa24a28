"""The prompt-guard part of the extproc config contract (controlplane -> extproc workers).

Plain frozen dataclasses, JSON-encoded with the rest of `ExtprocConfig`. A guard's
credential is an `AuthConfig`, which keeps its secret out of `repr` and logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # contract.py imports this module; AuthConfig is imported where it is built
    from extproc.contract import AuthConfig


@dataclass(frozen=True)
class HeaderMatchConfig:
    kind: str  # Exact | RegularExpression
    name: str  # lower case
    value: str


@dataclass(frozen=True)
class GuardConfig:
    kind: str  # regex | webhook | openAIModeration | bedrockGuardrails | googleModelArmor | azureContentSafety
    message: str
    status: int = 403
    scope: tuple[str, ...] = ("SystemPrompt", "Messages")
    action: str = "Mask"
    builtins: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    url: str = ""
    verify_tls: bool = True
    sni: str = ""
    timeout_s: float = 3.0
    connect_timeout_s: float | None = None
    failure_mode: str = "FailClosed"
    forward_headers: tuple[HeaderMatchConfig, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)
    auth: AuthConfig | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GuardConfig:
        from extproc.contract import AuthConfig

        return cls(
            **{
                **raw,
                "scope": tuple(raw.get("scope", ())),
                "builtins": tuple(raw.get("builtins", ())),
                "patterns": tuple(raw.get("patterns", ())),
                "forward_headers": tuple(HeaderMatchConfig(**h) for h in raw.get("forward_headers", ())),
                "settings": {str(k): str(v) for k, v in (raw.get("settings") or {}).items()},
                "auth": AuthConfig(**raw["auth"]) if raw.get("auth") else None,
            }
        )


@dataclass(frozen=True)
class PromptGuardConfig:
    """One backend's `promptGuard`: guards in evaluation order."""

    request: tuple[GuardConfig, ...] = ()
    response: tuple[GuardConfig, ...] = ()
    streaming: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PromptGuardConfig:
        return cls(
            request=tuple(GuardConfig.from_dict(g) for g in raw.get("request", ())),
            response=tuple(GuardConfig.from_dict(g) for g in raw.get("response", ())),
            streaming=bool(raw.get("streaming", False)),
        )
