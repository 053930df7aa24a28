"""Amazon Bedrock wire format for the fake provider: Converse JSON, the binary event stream, errors, SigV4.

Pure functions from request data to bytes, like `openai_wire`, so shapes are
checked without a server:

- `encode_frame`: the AWS event stream framing (prelude + CRC32, typed
  headers, payload, message CRC32) that ConverseStream answers in. Payloads
  carry the `p` padding field real Bedrock adds to hide lengths; clients must
  ignore it.
- `converse_reply` / `stream_frames`: the Converse and ConverseStream answers.
- `verify_sigv4`: checks the request's SigV4 signature with botocore against
  the known test credentials, as AWS would, over the bytes that arrived.
- `error_response_parts`: Bedrock's error shape, `{"message"}` with the type in
  the `x-amzn-ErrorType` header.

Token rule (deterministic, see `openai_wire`): a token is a whitespace word.
`inputTokens` counts the words of the messages; the system prompt's words are
reported as `cacheReadInputTokens` and the tool descriptions' words as
`cacheWriteInputTokens` (Bedrock's inputTokens exclude both), so cache
accounting can be tested end to end.
"""

from __future__ import annotations

import hmac
import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from fakeprovider import openai_wire as wire

# access key id -> (secret key, session token or None). Tests sign with these.
TEST_ACCESS_KEY = "AKIDLLMGWFAKE0000001"
TEST_SECRET_KEY = "llmgw-fake-secret-key-0000000000000000001"
TEST_SESSION_ACCESS_KEY = "ASIALLMGWFAKE0000002"
TEST_SESSION_SECRET_KEY = "llmgw-fake-secret-key-0000000000000000002"
TEST_SESSION_TOKEN = "llmgw-fake-session-token-0002"
TEST_CREDENTIALS: dict[str, tuple[str, str | None]] = {
    TEST_ACCESS_KEY: (TEST_SECRET_KEY, None),
    TEST_SESSION_ACCESS_KEY: (TEST_SESSION_SECRET_KEY, TEST_SESSION_TOKEN),
}

EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
ERROR_TYPES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_CORAL = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


# --- event stream framing --------------------------------------------------------------


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event stream frame with string headers (type 7), as Bedrock sends them."""
    raw_headers = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        raw_headers += bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
    total = 16 + len(raw_headers) + len(payload)
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    frame = prelude + raw_headers + payload
    return frame + struct.pack(">I", zlib.crc32(frame))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    body = {**payload, "p": _PAD[: 1 + len(event_type) % 20]}
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, orjson.dumps(body))


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_frame(headers, orjson.dumps({"message": message}))


# --- errors ----------------------------------------------------------------------------


def error_response_parts(status: int, message: str, error_type: str | None = None) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a Bedrock error: `{"message"}` plus `x-amzn-ErrorType`."""
    kind = error_type or ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": kind + _CORAL,
        "x-amzn-RequestId": request_id(),
    }
    return orjson.dumps({"message": message}), headers


def request_id() -> str:
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


# --- SigV4 -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthFailure:
    error_type: str
    message: str


_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_BAD_TOKEN = "The security token included in the request is invalid."


def verify_sigv4(*, method: str, path: str, headers: dict[str, str], body: bytes) -> AuthFailure | None:
    """None when `headers["authorization"]` is a valid SigV4 signature by a test credential.

    `headers` are the received ones with lower-case names; `path` is the raw
    path as received (percent-encoding intact).
    """
    auth = headers.get("authorization", "")
    if not auth:
        return AuthFailure("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH_RE.match(auth)
    if match is None:
        return AuthFailure("IncompleteSignatureException", f"Authorization header is not a SigV4 signature: {auth!r}")
    known = TEST_CREDENTIALS.get(match["key"])
    if known is None:
        return AuthFailure("UnrecognizedClientException", _BAD_TOKEN)
    secret, token = known
    if token is not None and headers.get("x-amz-security-token") != token:
        return AuthFailure("UnrecognizedClientException", _BAD_TOKEN)
    if match["service"] != "bedrock":
        return AuthFailure("InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")
    amz_date = headers.get("x-amz-date", "")
    if amz_date[:8] != match["date"]:
        return AuthFailure("InvalidSignatureException", "Date in Credential scope does not match X-Amz-Date.")
    names = match["signed"].split(";")
    if "host" not in names or "x-amz-date" not in names:
        return AuthFailure("InvalidSignatureException", "SignedHeaders must include host and x-amz-date.")
    if any(name not in headers for name in names):
        return AuthFailure("InvalidSignatureException", _BAD_SIGNATURE)
    signed = {name: headers[name] for name in names}
    request = AWSRequest(method=method, url=f"https://{headers['host']}{path}", data=body, headers=signed)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(ReadOnlyCredentials(match["key"], secret, token), match["service"], match["region"])
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return AuthFailure("InvalidSignatureException", _BAD_SIGNATURE)
    return None


# --- Converse --------------------------------------------------------------------------


def block_text(blocks: Any) -> str:
    """Space-joined `text` of content blocks (and of toolResult contents)."""
    if not isinstance(blocks, list):
        return ""
    texts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        result = block.get("toolResult")
        if isinstance(result, dict):
            for part in result.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(part, dict) and "json" in part:
                    texts.append(orjson.dumps(part["json"]).decode())
    return " ".join(texts)


_MUST_START = (
    "A conversation must start with a user message. Try again with a conversation that starts with a user message."
)
_MUST_ALTERNATE = (
    "A conversation must alternate between user and assistant roles. "
    "Make sure the conversation alternates between user and assistant roles and try again."
)


def validate_converse(data: Any) -> str | None:
    """Bedrock's ValidationException message for a malformed Converse body, or None."""
    if not isinstance(data, dict):
        return "Malformed input request, please reformat your input and try again."
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return _MUST_START
    expected = "user"
    uses_tools = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") != expected:
            return _MUST_ALTERNATE
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return (
                f"The content field in the Message object at messages.{i} is empty. "
                "Add a ContentBlock object to the content field and try again."
            )
        for block in content:
            if not isinstance(block, dict) or len(block) != 1:
                return f"messages.{i}: each ContentBlock must set exactly one member."
            if block.get("text") == "" or (isinstance(block.get("text"), str) and not block["text"].strip()):
                return (
                    f"The text field in the ContentBlock object at messages.{i} is blank. "
                    "Add text to the text field, and try again."
                )
            uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
        expected = "assistant" if expected == "user" else "user"
    if uses_tools and not isinstance(data.get("toolConfig"), dict):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


def prompt_and_usage(data: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """(last user text, usage before output) of a Converse request, per the fake's token rule."""
    last_user = ""
    words = 0
    for message in data.get("messages") or []:
        text = block_text(message.get("content"))
        words += wire.count_words(text)
        if message.get("role") == "user":
            last_user = text
    usage = {"inputTokens": max(1, words)}
    cache_read = wire.count_words(block_text(data.get("system")))
    tools = (data.get("toolConfig") or {}).get("tools") or []
    cache_write = sum(wire.count_words(str((t.get("toolSpec") or {}).get("description") or "")) for t in tools)
    if cache_read:
        usage["cacheReadInputTokens"] = cache_read
    if cache_write:
        usage["cacheWriteInputTokens"] = cache_write
    return last_user, usage


def wants_tool(data: dict[str, Any], last_user: str) -> str | None:
    """The first tool's name when tools are offered and the user asks about the weather."""
    tools = (data.get("toolConfig") or {}).get("tools") or []
    last = (data.get("messages") or [{}])[-1]
    answered = any(isinstance(b, dict) and "toolResult" in b for b in last.get("content") or [])
    if tools and not answered and "weather" in last_user.lower():
        name = (tools[0].get("toolSpec") or {}).get("name")
        return name if isinstance(name, str) else None
    return None


def tool_use_id() -> str:
    return "tooluse_" + os.urandom(11).hex()


def final_usage(usage: dict[str, int], output_tokens: int) -> dict[str, int]:
    out = {**usage, "outputTokens": output_tokens}
    out["totalTokens"] = sum(v for k, v in out.items() if k != "totalTokens")
    return out


def converse_reply(*, text: str | None, tool: tuple[str, str] | None, usage: dict[str, int]) -> bytes:
    """A Converse response: text, or one toolUse (`(name, id)`) asking for Paris' weather."""
    content: list[dict[str, Any]] = []
    if tool is not None:
        content.append({"toolUse": {"toolUseId": tool[1], "name": tool[0], "input": {"city": "Paris"}}})
        stop, output = "tool_use", 8
    else:
        content.append({"text": text or ""})
        stop, output = "end_turn", wire.count_words(text or "")
    return orjson.dumps(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": final_usage(usage, output),
            "metrics": {"latencyMs": 42},
        }
    )


TOOL_INPUT_FRAGMENTS = ['{"ci', 'ty": "Pa', 'ris"}']  # split mid-token, as Bedrock streams toolUse input


def stream_frames(*, pieces: list[str], tool: tuple[str, str] | None, usage: dict[str, int]) -> list[bytes]:
    """The ConverseStream frames: messageStart, block deltas, messageStop, metadata."""
    frames = [event_frame("messageStart", {"role": "assistant"})]
    if tool is not None:
        start = {"toolUse": {"toolUseId": tool[1], "name": tool[0]}}
        frames.append(event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        for fragment in TOOL_INPUT_FRAGMENTS:
            delta = {"toolUse": {"input": fragment}}
            frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}))
        stop, output = "tool_use", 8
    else:
        for piece in pieces:
            frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}))
        stop, output = "end_turn", wire.count_words("".join(pieces))
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(event_frame("messageStop", {"stopReason": stop}))
    frames.append(event_frame("metadata", {"usage": final_usage(usage, output), "metrics": {"latencyMs": 42}}))
    return frames


# --- Titan text embeddings -------------------------------------------------------------

TITAN_DIMENSIONS = (256, 512, 1024)


def titan_embedding(data: Any, model: str) -> tuple[int, bytes]:
    """(status, body) of InvokeModel on a Titan Text Embeddings model (v2 rules)."""
    if not isinstance(data, dict) or not isinstance(data.get("inputText"), str) or not data["inputText"]:
        return 400, orjson.dumps({"message": "Malformed input request: #: required key [inputText] not found"})
    dimensions = data.get("dimensions", 1024)
    if "v1" in model and ("dimensions" in data or "normalize" in data):
        return 400, orjson.dumps({"message": "Malformed input request: extraneous key [dimensions] is not permitted"})
    if dimensions not in TITAN_DIMENSIONS:
        return 400, orjson.dumps(
            {"message": f"Malformed input request: #/dimensions: {dimensions} is not a valid enum value"}
        )
    text = data["inputText"]
    vector = wire.embedding_vector(text, dimensions)
    return 200, orjson.dumps({"embedding": vector, "inputTextTokenCount": max(1, wire.count_words(text))})
