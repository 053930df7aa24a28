"""The API key core (extproc/policies/authn.py): where keys are read, modes, identities, no key kept."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import wire
from extproc.configclient import ConfigHolder
from extproc.contract import ApiKeyEntry, ApiKeyPolicyConfig, AuthnConfig, ExtprocConfig
from extproc.identity import Identity
from extproc.policies import authn
from extproc.router_stage import RouterRequest
from extproc.server import ExternalProcessor
from tests.extproc_protos import GATEWAY, header_sets, http_headers, immediate_json, make_config

ALICE = "sk-alice-123"


def policy(
    mode: str = "Strict", *, header: str | None = None, prefix: str = "", pid: str = "p1"
) -> authn.CompiledPolicy:
    entry = ApiKeyEntry(
        key_id="ns/keys/alice",
        sha256=hashlib.sha256(ALICE.encode()).hexdigest(),
        user="alice",
        team="search",
        tenant="acme",
        labels=[["tier", "gold"]],
    )
    return authn.compile_policy(
        ApiKeyPolicyConfig(id=f"{pid}-{mode}-{header}-{prefix}", mode=mode, keys=[entry], header=header, prefix=prefix)
    )


ALICE_ID = Identity(
    source="apikey", key_id="ns/keys/alice", user="alice", team="search", tenant="acme", labels=(("tier", "gold"),)
)


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {ALICE}"},
        {"authorization": f"bearer {ALICE}"},
        {"x-api-key": ALICE},
        {"api-key": ALICE},
    ],
)
def test_the_sdk_headers_carry_the_key(headers: dict[str, str]) -> None:
    out = authn.authenticate(policy=policy(), headers=headers)
    assert out == authn.Outcome(False, identity=ALICE_ID)


def test_a_basic_authorization_is_not_a_key_but_x_api_key_beside_it_is() -> None:
    headers = {"authorization": "Basic abc", "x-api-key": ALICE}
    assert authn.authenticate(policy=policy(), headers=headers).identity == ALICE_ID


@pytest.mark.parametrize(
    ("mode", "headers", "refused", "message"),
    [
        ("Strict", {}, True, "Missing API key"),
        ("Strict", {"x-api-key": "sk-wrong"}, True, "Invalid API key"),
        ("Optional", {}, False, ""),
        ("Optional", {"x-api-key": "sk-wrong"}, True, "Invalid API key"),
        ("Permissive", {}, False, ""),
        ("Permissive", {"x-api-key": "sk-wrong"}, False, ""),
    ],
)
def test_modes(mode: str, headers: dict[str, str], refused: bool, message: str) -> None:
    out = authn.authenticate(policy=policy(mode), headers=headers)
    assert out.refused is refused
    assert out.identity is None
    assert out.message.startswith(message)
    assert "sk-wrong" not in out.message


def test_a_configured_header_and_prefix_are_the_only_place_looked_at() -> None:
    p = policy(header="x-team-key", prefix="Key ")
    assert authn.authenticate(policy=p, headers={"x-team-key": f"Key {ALICE}"}).identity == ALICE_ID
    assert authn.authenticate(policy=p, headers={"x-team-key": ALICE}).refused  # prefix missing
    assert authn.authenticate(policy=p, headers={"authorization": f"Bearer {ALICE}"}).refused
    assert "x-team-key" in authn.credential_headers(p)


def test_the_compiled_policy_holds_digests_not_keys() -> None:
    p = policy()
    assert ALICE not in repr(p)
    assert list(p.by_digest) == [hashlib.sha256(ALICE.encode()).hexdigest()]
    assert ALICE not in repr(ApiKeyPolicyConfig(id="x", mode="Strict", keys=[ApiKeyEntry(key_id="k", sha256="d")]))


def test_non_ascii_and_empty_keys_do_not_raise() -> None:
    assert authn.authenticate(policy=policy(), headers={"x-api-key": "ключ\udcff"}).refused
    assert authn.authenticate(policy=policy(), headers={"authorization": "Bearer   "}).message.startswith("Missing")


# --- in the router stage -------------------------------------------------------------------------


def _router_config() -> ExtprocConfig:
    entry = ApiKeyEntry(key_id="ns/keys/alice", sha256=hashlib.sha256(ALICE.encode()).hexdigest(), user="alice")
    strict = ApiKeyPolicyConfig(id="strict1", mode="Strict", keys=[entry])
    other = ApiKeyPolicyConfig(id="other2", mode="Strict", keys=[])
    return dataclasses.replace(
        make_config(),
        authn={"strict1": AuthnConfig(id="strict1", api_key=strict), "other2": AuthnConfig(id="other2", api_key=other)},
        gateway_authn={GATEWAY: ["strict1", "other2"]},
    )


def _headers(path: str, **extra: str) -> ep.HttpHeaders:
    return http_headers({":method": "POST", ":path": path, ":authority": "gw", **extra})


ROUTE = wire.authn_route_name("httproute/ns/r/rule/0/match/0", "strict1")


def test_router_stage_refuses_in_the_clients_schema_on_the_routes_policy() -> None:
    rr = RouterRequest(gateway=GATEWAY, config=_router_config())
    status, doc = immediate_json(
        rr.on_request_headers(_headers("/v1/messages", **{"x-api-key": "no"}), route_name=ROUTE)
    )
    assert status == 401
    assert doc == {"type": "error", "error": {"type": "authentication_error", "message": "Invalid API key."}}
    rr = RouterRequest(gateway=GATEWAY, config=_router_config())
    status, doc = immediate_json(rr.on_request_headers(_headers("/v1/chat/completions"), route_name=ROUTE))
    assert (status, doc["error"]["code"], doc["error"]["type"]) == (401, "invalid_api_key", "authentication_error")


def test_router_stage_marks_the_satisfied_policies_and_strips_the_key() -> None:
    rr = RouterRequest(gateway=GATEWAY, config=_router_config())
    resp = rr.on_request_headers(_headers("/v1/chat/completions", authorization=f"Bearer {ALICE}"), route_name=ROUTE)
    mutation = resp.request_headers.response.header_mutation
    assert header_sets(mutation) == {wire.AUTHN_HEADER: ",strict1,"}
    assert set(mutation.remove_headers) == {"authorization", "x-api-key", "api-key"}
    assert rr.identity is not None and rr.identity.user == "alice"


def test_router_stage_without_a_matched_route_checks_every_policy_and_refuses_nothing_itself() -> None:
    rr = RouterRequest(gateway=GATEWAY, config=_router_config())
    resp = rr.on_request_headers(_headers("/v1/chat/completions"), route_name=None)
    assert header_sets(resp.request_headers.response.header_mutation) == {wire.AUTHN_HEADER: ",,"}
    assert rr.identity is None


def test_router_stage_on_a_guard_route_has_envoy_match_again_after_setting_the_header() -> None:
    rr = RouterRequest(gateway=GATEWAY, config=_router_config())
    guard = ROUTE + wire.AUTHN_GUARD_SUFFIX
    resp = rr.on_request_headers(_headers("/v1/chat/completions", **{"x-api-key": ALICE}), route_name=guard)
    common = resp.request_headers.response
    assert common.clear_route_cache
    assert header_sets(common.header_mutation) == {wire.AUTHN_HEADER: ",strict1,"}
    rr = RouterRequest(gateway=GATEWAY, config=_router_config())
    status, _ = immediate_json(rr.on_request_headers(_headers("/v1/chat/completions"), route_name=guard))
    assert status == 401  # the guarded route's own policy refuses at once


def test_a_route_whose_authentication_the_worker_does_not_know_is_refused_not_passed() -> None:
    rr = RouterRequest(gateway=GATEWAY, config=make_config())  # a config from before the policy
    unknown = wire.authn_route_name("httproute/ns/r/rule/0/match/0", "newer")
    status, doc = immediate_json(
        rr.on_request_headers(_headers("/v1/chat/completions", **{"x-api-key": ALICE}), route_name=unknown)
    )
    assert (status, doc["error"]["code"]) == (503, "not_ready")


def test_a_route_newer_than_the_workers_config_waits_for_the_config_that_has_it() -> None:
    # Envoy got the route (a rotated key is a new authentication id) before this worker got its config.
    holder = ConfigHolder()
    assert holder.accept(make_config().to_json())
    processor = ExternalProcessor(holder)
    headers = ep.ProcessingRequest(request_headers=_headers("/v1/chat/completions", **{"x-api-key": "wrong"}))
    headers.attributes["envoy.filters.http.ext_proc"].fields["xds.route_name"].string_value = ROUTE

    async def requests() -> AsyncIterator[ep.ProcessingRequest]:
        yield headers

    async def main() -> list[ep.ProcessingResponse]:
        stream = processor.Process(requests(), _Context())  # type: ignore[arg-type]
        answers = asyncio.ensure_future(_collect(stream))
        for _ in range(20):  # let the stream run until it blocks (no I/O here: only on the config it waits for)
            await asyncio.sleep(0)
        assert not answers.done()  # waiting, not refused with "retry shortly"
        assert holder.accept(_router_config().to_json())
        return await answers

    (resp,) = asyncio.run(main())
    status, doc = immediate_json(resp)
    assert (status, doc["error"]["code"]) == (401, "invalid_api_key")


def test_a_route_older_than_the_workers_config_is_served_by_the_config_envoy_routed_it_by() -> None:
    # The worker got a rotation (the policy's new id) before Envoy did: Envoy still routes by the old id.
    holder = ConfigHolder()
    assert holder.accept(_router_config().to_json())
    rotated = _router_config()
    rotated = dataclasses.replace(
        rotated,
        authn={
            "strict2": dataclasses.replace(rotated.authn["strict1"], id="strict2"),
            "other2": rotated.authn["other2"],
        },
        gateway_authn={GATEWAY: ["strict2", "other2"]},
    )
    assert holder.accept(rotated.to_json())
    processor = ExternalProcessor(holder)
    headers = ep.ProcessingRequest(request_headers=_headers("/v1/chat/completions", **{"x-api-key": "wrong"}))
    headers.attributes["envoy.filters.http.ext_proc"].fields["xds.route_name"].string_value = ROUTE  # old id

    async def requests() -> AsyncIterator[ep.ProcessingRequest]:
        yield headers

    async def main() -> list[ep.ProcessingResponse]:
        return await _collect(processor.Process(requests(), _Context()))  # type: ignore[arg-type]

    (resp,) = asyncio.run(main())
    status, doc = immediate_json(resp)
    assert (status, doc["error"]["code"]) == (401, "invalid_api_key")  # checked by the old policy, not a 503


class _Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((wire.STAGE_METADATA_KEY, wire.STAGE_ROUTER), (wire.GATEWAY_METADATA_KEY, GATEWAY))


async def _collect(stream: AsyncIterator[ep.ProcessingResponse]) -> list[ep.ProcessingResponse]:
    return [resp async for resp in stream]


def test_a_guard_route_reads_the_routes_map_of_the_route_it_guards() -> None:
    # policies.ai.routes of the guarded route, not an empty map for the guard's own name.
    config = dataclasses.replace(_router_config(), route_types={ROUTE: (("/ask", "chat_completions"),)})
    rr = RouterRequest(gateway=GATEWAY, config=config)
    rr.on_request_headers(_headers("/v1/ask", **{"x-api-key": ALICE}), route_name=ROUTE + wire.AUTHN_GUARD_SUFFIX)
    assert rr.op is not None and rr.op.name == "chat_completions"
