"""OpenAI chat completions client -> Amazon Bedrock Converse / ConverseStream.

The body is rebuilt, not patched: Converse is another schema and rejects
fields it does not know, so unknown OpenAI fields are dropped.

Request: system/developer -> `system`; user text, images (base64 data: URLs
only, Converse cannot fetch URLs: an http(s) image is a 400 naming the field)
and file parts (`document`); assistant `tool_calls` -> `toolUse`; `role: tool`
-> `toolResult` in a user turn (consecutive same-role turns merge: Converse
requires alternation); tools/tool_choice -> `toolConfig` (auto/any/tool;
"none" leaves tools out unless the history uses them); max tokens,
temperature, top_p, stop -> `inferenceConfig`; the provider's guardrail ->
`guardrailConfig`; `reasoning_effort` on Claude models ->
`additionalModelRequestFields.reasoning_config {type: enabled, budget_tokens}`
with minimal/low 1024, medium 2048, high 4096 (agentgateway's budgets, kept
below an explicit max tokens; other model families ignore it).

Responses (JSON, event stream, errors) are translated by
`openai_bedrock_response`. Request translation is pure and idempotent (a
retried attempt gets the same bytes); what Converse cannot express raises
`TranslationError`, answered as a 400 in the OpenAI schema.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from extproc.providers.bedrock import guardrail_config
from extproc.translate.base import RequestContext, Translating, TranslationError, UpstreamRequest, encode, finalized
from extproc.translate.openai_bedrock_response import BedrockChatResponse

REASONING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}
MIN_REASONING_BUDGET = 1024
IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL)
_DOC_NAME_BAD = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")


# --- request -----------------------------------------------------------------------------


def converse_request(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The Converse body for an OpenAI chat completions body (the model goes in the path)."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise TranslationError("Bedrock Converse returns one choice; `n` greater than 1 is not supported.", param="n")
    system, messages = _messages(body.get("messages"))
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference = _inference_config(body)
    reasoning = _reasoning(body, ctx.model, inference)
    if inference:
        out["inferenceConfig"] = inference
    tool_config = _tool_config(body, messages)
    if tool_config:
        out["toolConfig"] = tool_config
    if reasoning:
        out["additionalModelRequestFields"] = {"reasoning_config": reasoning}
    guardrail = guardrail_config(ctx.provider)
    if guardrail:
        out["guardrailConfig"] = guardrail
    return out


def _messages(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(raw, list) or not raw:
        raise TranslationError("`messages` must be a non-empty array.", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError(f"{where} must be an object.", param=where)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": t} for t in _texts(message.get("content"), where) if t.strip())
            continue
        if role == "user":
            blocks, turn_role = _user_blocks(message.get("content"), where), "user"
        elif role == "assistant":
            blocks, turn_role = _assistant_blocks(message, where), "assistant"
        elif role == "tool":
            blocks, turn_role = [_tool_result(message, where)], "user"
        else:
            raise TranslationError(f"{where}.role {role!r} is not supported by Bedrock Converse.", param=where)
        if not blocks:
            continue  # Converse rejects empty turns (clients send empty assistant turns)
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    return system, turns


def _texts(content: Any, where: str) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        out = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                raise TranslationError(f"{where}.content[{j}] must be a text part here.", param=f"{where}.content")
            out.append(str(part.get("text") or part.get("refusal") or ""))
        return out
    if content is None:
        return []
    raise TranslationError(f"{where}.content must be a string or an array of parts.", param=f"{where}.content")


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"text": content}] if content and content.strip() else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or an array of parts.", param=f"{where}.content")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        block = _part(part, f"{where}.content[{j}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _part(part: Any, where: str) -> dict[str, Any] | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        text = part.get("text")
        return {"text": text} if isinstance(text, str) and text.strip() else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url.startswith("data:"):
            raise TranslationError(
                f"{where}.image_url.url: Bedrock Converse does not fetch image URLs; "
                "send the image inline as a base64 data: URL (data:image/png;base64,...).",
                code="unsupported_image_url",
                param=f"{where}.image_url.url",
            )
        mime, data = _data_url(url, f"{where}.image_url.url")
        fmt = IMAGE_FORMATS.get(mime)
        if fmt is None:
            raise TranslationError(f"{where}: image type {mime} is not supported (png, jpeg, gif, webp).", param=where)
        return {"image": {"format": fmt, "source": {"bytes": data}}}
    if kind == "file":
        file = part.get("file") if isinstance(part.get("file"), dict) else {}
        url = file.get("file_data")
        if not isinstance(url, str):
            raise TranslationError(
                f"{where}.file.file_data: Bedrock needs the file inline as a data: URL.", param=where
            )
        mime, data = _data_url(url, f"{where}.file.file_data")
        fmt = DOCUMENT_FORMATS.get(mime)
        if fmt is None:
            raise TranslationError(f"{where}: document type {mime} is not supported by Bedrock Converse.", param=where)
        stem = str(file.get("filename") or "document").rsplit(".", 1)[0]
        name = " ".join(_DOC_NAME_BAD.sub("-", stem).split()) or "document"
        return {"document": {"format": fmt, "name": name[:200], "source": {"bytes": data}}}
    raise TranslationError(f"{where}: content part type {kind!r} is not supported by Bedrock Converse.", param=where)


def _data_url(url: str, where: str) -> tuple[str, str]:
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match["params"]:
        raise TranslationError(f"{where} must be a base64 data: URL (data:<type>;base64,<data>).", param=where)
    return match["mime"].lower(), match["data"]


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": t} for t in _texts(message.get("content"), where) if t.strip()]
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls must be an array.", param=f"{where}.tool_calls")
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not (isinstance(function, dict) and isinstance(call.get("id"), str) and isinstance(name, str) and name):
            raise TranslationError(f"{at} needs an id and a function name.", param=at)
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise TranslationError(f"{at}.function.arguments must be a JSON object.", param=f"{at}.function.arguments")
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": function["name"], "input": arguments}})
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.tool_call_id is required for tool messages.", param=f"{where}.tool_call_id")
    content = message.get("content")
    result: list[dict[str, Any]]
    if isinstance(content, dict):  # not OpenAI's schema, but a structured result some clients send
        result = [{"json": content}]
    else:
        result = [{"text": t} for t in _texts(content, where)] or [{"text": ""}]
    return {"toolResult": {"toolUseId": call_id, "content": result}}


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        out["maxTokens"] = max_tokens
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        value = body.get(src)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[dst] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stopSequences"] = [s for s in stop if isinstance(s, str)]
    return out


def _reasoning(body: dict[str, Any], model: str, inference: dict[str, Any]) -> dict[str, Any] | None:
    budget = REASONING_BUDGETS.get(str(body.get("reasoning_effort")))
    if budget is None or "anthropic.claude" not in model.lower():
        return None
    max_tokens = inference.get("maxTokens")
    if isinstance(max_tokens, int) and max_tokens <= budget:  # Claude requires max_tokens > budget_tokens
        budget = max_tokens - 1
        if budget < MIN_REASONING_BUDGET:
            return None
    return {"type": "enabled", "budget_tokens": budget}


def _tool_config(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools: list[dict[str, Any]] = []
    raw = body.get("tools") or []
    if not isinstance(raw, list):
        raise TranslationError("`tools` must be an array of tools.", param="tools")
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TranslationError(f"tools[{i}]: only function tools with a name are supported.", param=f"tools[{i}]")
        spec: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["inputSchema"] = {"json": function.get("parameters") or {"type": "object", "properties": {}}}
        tools.append({"toolSpec": spec})
    choice = body.get("tool_choice")
    used = {b["toolUse"]["name"] for m in messages for b in m["content"] if "toolUse" in b}
    if choice == "none" and not used:
        return None
    if not tools and used:  # Converse requires toolConfig when the history has tool blocks
        tools = [{"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object"}}}} for n in sorted(used)]
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        config["toolChoice"] = {"tool": {"name": choice["function"].get("name")}}
    return config


class BedrockPair(Translating):
    client_api = "openai"
    provider_api = "bedrock"

    def request(self, body: dict[str, Any], ctx: RequestContext) -> UpstreamRequest:
        converse = converse_request(body, ctx)
        headers = {"content-type": "application/json"}
        if ctx.stream:
            headers["accept"] = "application/vnd.amazon.eventstream"
        return UpstreamRequest(body=encode(finalized(converse, ctx)), headers=headers)

    def response(self, ctx: RequestContext, *, client_wants_usage: bool) -> BedrockChatResponse:
        return BedrockChatResponse(ctx, client_wants_usage=client_wants_usage)


PAIR = BedrockPair()
