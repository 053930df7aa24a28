"""Gemini wire format (AI Studio and Vertex AI `publishers/google`): bodies, SSE events, errors.

Pure functions from a parsed request to the bytes Gemini would send, so the shapes can be
checked without a server. Shapes follow the public REST reference:
`GenerateContentResponse` (`candidates[].content.parts`, `finishReason`, `index`,
`usageMetadata`, `modelVersion`, `responseId`, and `createTime` on Vertex), the
`alt=sse` stream (one whole response per `data:` event, `\\r\\n\\r\\n` separated, the last one
carrying `finishReason` and the full usage, no `[DONE]`), `batchEmbedContents`,
`embedContent`, Vertex `predict` for text embeddings, and Google's error schema
`{"error": {"code", "message", "status"}}`.

The reply rules are the fake provider's usual ones: "Hello from NAME: " + the last user
text, a token is a whitespace word; a request with tools whose last user text mentions
"weather" gets a call of the first function with `{"city": "Paris"}` (unless it already
carries a function response, which is answered with text).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import orjson

from fakeprovider import openai_wire

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
SSE_SEPARATOR = b"\r\n\r\n"


def error_body(*, status: int, message: str) -> bytes:
    name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return orjson.dumps({"error": {"code": status, "message": message, "status": name}})


def response_id() -> str:
    return os.urandom(9).hex()


def _texts(content: Any) -> list[str]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]


def validate_generate(data: Any) -> str | None:
    """Gemini's 400 message for a body it would reject, None when fine."""
    if not isinstance(data, dict):
        return "Invalid JSON payload received."
    contents = data.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list) or not content["parts"]:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        if content.get("role") not in (None, "user", "model"):
            return f"* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
    known = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings"}
    known |= {"cachedContent", "labels"}
    unknown = sorted(set(data) - known)
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
    return None


@dataclass(frozen=True)
class Reply:
    text: str | None  # None: a function call instead
    call: dict[str, Any] | None
    prompt_tokens: int
    output_tokens: int
    finish: str = "STOP"


def plan_reply(data: dict[str, Any], *, name: str, response_text: str | None) -> Reply:
    contents = data["contents"]
    words = sum(openai_wire.count_words(t) for c in contents for t in _texts(c))
    words += sum(openai_wire.count_words(t) for t in _texts(data.get("systemInstruction")))
    last_user = ""
    for content in contents:
        if isinstance(content, dict) and content.get("role", "user") == "user" and _texts(content):
            last_user = " ".join(_texts(content))
    last = contents[-1]
    answered = any(isinstance(p, dict) and "functionResponse" in p for p in last.get("parts", []))
    functions = [
        decl
        for tool in data.get("tools") or []
        if isinstance(tool, dict)
        for decl in tool.get("functionDeclarations") or []
        if isinstance(decl, dict)
    ]
    prompt = max(1, words)
    if functions and "weather" in last_user.lower() and not answered:
        call = {"name": functions[0].get("name", ""), "args": {"city": "Paris"}}
        return Reply(text=None, call=call, prompt_tokens=prompt, output_tokens=3)
    text = response_text if response_text is not None else openai_wire.reply_text(name=name, prompt=last_user)
    config = data.get("generationConfig") or {}
    limit = config.get("maxOutputTokens") if isinstance(config, dict) else None
    finish = "STOP"
    if isinstance(limit, int) and 0 < limit < openai_wire.count_words(text):
        text = " ".join(text.split()[:limit])
        finish = "MAX_TOKENS"
    return Reply(text=text, call=None, prompt_tokens=prompt, output_tokens=openai_wire.count_words(text), finish=finish)


def _usage(reply: Reply, *, final: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": reply.prompt_tokens}
    if final:
        usage["candidatesTokenCount"] = reply.output_tokens
        usage["totalTokenCount"] = reply.prompt_tokens + reply.output_tokens
    else:
        usage["totalTokenCount"] = reply.prompt_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.prompt_tokens}]
    return usage


def _envelope(
    candidates: list[dict[str, Any]], usage: dict[str, Any], *, model: str, rid: str, vertex: bool
) -> dict[str, Any]:
    doc: dict[str, Any] = {"candidates": candidates, "usageMetadata": usage, "modelVersion": model}
    if vertex:
        now = datetime.datetime.now(datetime.UTC)
        doc["createTime"] = now.isoformat().replace("+00:00", "Z")
    doc["responseId"] = rid
    return doc


def _parts(reply: Reply, text: str | None = None) -> list[dict[str, Any]]:
    if reply.call is not None:
        return [{"functionCall": reply.call}]
    return [{"text": reply.text if text is None else text}]


def generate_body(reply: Reply, *, model: str, candidates: int, vertex: bool) -> bytes:
    cands = [
        {"content": {"parts": _parts(reply), "role": "model"}, "finishReason": reply.finish, "index": i}
        for i in range(max(1, candidates))
    ]
    usage = _usage(reply, final=True)
    if candidates > 1:
        usage["candidatesTokenCount"] = reply.output_tokens * candidates
        usage["totalTokenCount"] = reply.prompt_tokens + reply.output_tokens * candidates
    return orjson.dumps(_envelope(cands, usage, model=model, rid=response_id(), vertex=vertex))


def stream_events(reply: Reply, *, model: str, chunks: int, vertex: bool) -> list[bytes]:
    """`data: {GenerateContentResponse}\\r\\n\\r\\n` events; the last one has finishReason and full usage."""
    rid = response_id()
    pieces = [None] if reply.call is not None else openai_wire.split_text(reply.text or "", chunks) or [""]
    events = []
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        candidate: dict[str, Any] = {"content": {"parts": _parts(reply, piece), "role": "model"}}
        if final:
            candidate["finishReason"] = reply.finish
        candidate["index"] = 0
        doc = _envelope([candidate], _usage(reply, final=final), model=model, rid=rid, vertex=vertex)
        events.append(b"data: " + orjson.dumps(doc) + SSE_SEPARATOR)
    return events


def embed_values(text: str, dimensions: int | None) -> list[float]:
    return openai_wire.embedding_vector(text, dimensions or openai_wire.DEFAULT_EMBEDDING_DIMENSIONS)


def _dimensions(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= openai_wire.MAX_EMBEDDING_DIMENSIONS
    return value if ok else None


def batch_embed(data: Any, *, model: str) -> tuple[bytes | None, str | None]:
    """(`batchEmbedContents` body, None) or (None, 400 message)."""
    requests = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(requests, list) or not requests:
        return None, "* BatchEmbedContentsRequest.requests: requests is not specified"
    out = []
    for i, item in enumerate(requests):
        if not isinstance(item, dict) or item.get("model") != f"models/{model}":
            return None, f"* BatchEmbedContentsRequest.requests[{i}].model: model must be models/{model}"
        texts = _texts(item.get("content"))
        if not texts:
            return None, f"* BatchEmbedContentsRequest.requests[{i}].content: content is not specified"
        out.append({"values": embed_values(" ".join(texts), _dimensions(item.get("outputDimensionality")))})
    return orjson.dumps({"embeddings": out}), None


def embed_one(data: Any) -> tuple[bytes | None, str | None]:
    texts = _texts(data.get("content")) if isinstance(data, dict) else []
    if not texts:
        return None, "* EmbedContentRequest.content: content is not specified"
    values = embed_values(" ".join(texts), _dimensions(data.get("outputDimensionality")))
    return orjson.dumps({"embedding": {"values": values}}), None


def predict_embeddings(data: Any) -> tuple[bytes | None, str | None]:
    """Vertex text embeddings `predict`: instances[].content -> predictions[].embeddings."""
    instances = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(instances, list) or not instances:
        return None, "instances must be a non-empty list"
    params = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    dims = _dimensions(params.get("outputDimensionality"))
    predictions = []
    chars = 0
    for instance in instances:
        text = instance.get("content") if isinstance(instance, dict) else None
        if not isinstance(text, str):
            return None, "each instance needs a string `content`"
        chars += len(text)
        stats = {"truncated": False, "token_count": max(1, openai_wire.count_words(text))}
        predictions.append({"embeddings": {"statistics": stats, "values": embed_values(text, dims)}})
    return orjson.dumps({"predictions": predictions, "metadata": {"billableCharacterCount": chars}}), None
