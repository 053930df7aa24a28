"""The quickstart as shipped (examples/quickstart), with only its two ports moved: `/v1/models` is not empty.

The backend names its model, so the official SDK's `models.list()` shows what the
gateway serves, a chat request is answered by that model, and embeddings keep the
client's model (a chat model is no embedding model).
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import REPO, GatewayProcess

pytestmark = pytest.mark.integration
EXAMPLE = REPO / "examples" / "quickstart" / "gateway.yaml"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="quickstart").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeProviderThread) -> Iterator[GatewayProcess]:
    text = EXAMPLE.read_text()
    assert "port: 8080" in text and "port: 9100" in text
    gw = GatewayProcess(workers=1)
    gw.write("gateway.yaml", text.replace("port: 8080", f"port: {gw.port}").replace("port: 9100", f"port: {fake.port}"))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def test_models_lists_the_backend_model(gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]


def test_chat_uses_the_named_model_and_embeddings_keep_theirs(
    gateway: GatewayProcess, fake: FakeProviderThread
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/openai/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi"}])
    assert reply.model == "gpt-4o-mini"
    assert fake.requests[-1].json["model"] == "gpt-4o-mini"
    client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert fake.requests[-1].json["model"] == "text-embedding-3-small"
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-quickstart-fake-key"
