"""OpenAI chat completions client -> Anthropic Messages provider (Anthropic, and Vertex AI's Claude).

Anthropic's schema differs from OpenAI's, so the request is rebuilt: system and
developer messages become the top-level `system`; assistant `tool_calls` become
`tool_use` blocks and `tool` messages `tool_result` blocks of one user turn
(consecutive same-role turns are merged, Anthropic wants them alternating);
`max_tokens` is required (4096 when the client gave none). Fields Anthropic
would reject (`n`, `seed`, penalties, ...) are dropped; Anthropic-only fields a
client sends through the OpenAI SDK's `extra_body` (`top_k`, `thinking`, ...)
and `cache_control` markers on content parts are kept.

`response_format` uses tool forcing, as Anthropic documents for JSON output and
LiteLLM does (Envoy AI Gateway uses `output_config` only on models it knows
support it): one tool named `JSON_TOOL` whose input schema is the client's
schema, forced with `tool_choice` when nothing else needs tool choice. Its
input comes back to the client as the message content, not as a tool call.

`reasoning_effort` becomes `thinking.budget_tokens` with agentgateway's budgets
(low 1024, medium 2048, high 4096; xhigh 8192 here), and `max_tokens` grows so
the budget fits (Anthropic wants budget < max_tokens).

Vertex AI (`provider_api == "vertex_anthropic"`) takes the same body without
`model` and with `anthropic_version` in it; the vertexai provider module
builds its path. The response half (JSON, SSE, errors) is
`openai_anthropic_response`, kept apart only for size.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.translate import stamps
from extproc.translate.anthropic_wire import DEFAULT_API_VERSION, api_version
from extproc.translate.base import RequestContext, Translating, UpstreamRequest, encode, finalized
from extproc.translate.openai_anthropic_response import JSON_TOOL, ChatFromAnthropic

DEFAULT_MAX_TOKENS = 4096
VERTEX_VERSION = "vertex-2023-10-16"
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192}
MIN_THINKING_BUDGET = 1024
# Anthropic-only request fields a client may send through the OpenAI SDK (`extra_body`).
ANTHROPIC_FIELDS = ("top_k", "thinking", "output_config", "context_management", "mcp_servers", "container")
JSON_INSTRUCTION = f"Always give your final answer by calling the {JSON_TOOL} tool."


def _text_of(content: Any) -> str:
    """Text of an OpenAI content value: a string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _with_cache(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _image_block(url: str) -> dict[str, Any]:
    """An `image_url` as an Anthropic image (or PDF document) block: https URL or data: URL."""
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type = header.split(";", 1)[0] or "application/octet-stream"
        source = {"type": "base64", "media_type": media_type, "data": data}
        kind = "document" if media_type == "application/pdf" else "image"
        return {"type": kind, "source": source}
    kind = "document" if url.lower().split("?", 1)[0].endswith(".pdf") else "image"
    return {"type": kind, "source": {"type": "url", "url": url}}


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI user/assistant/tool content as Anthropic blocks (empty text dropped: Anthropic rejects it)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        ptype = part.get("type")
        if ptype in ("text", "refusal"):
            text = part.get("text") if ptype == "text" else part.get("refusal")
            if isinstance(text, str) and text:
                blocks.append(_with_cache({"type": "text", "text": text}, part))
        elif ptype == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                blocks.append(_with_cache(_image_block(url), part))
        elif ptype == "file" and isinstance(part.get("file"), dict):
            data = part["file"].get("file_data")
            if isinstance(data, str):
                url = data if data.startswith("data:") else f"data:application/pdf;base64,{data}"
                blocks.append(_with_cache(_image_block(url), part))
        else:
            blocks.append(part)  # unknown part: Anthropic says what is wrong with it, with a 400
    return blocks


def _tool_use_blocks(tool_calls: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if not isinstance(tool_calls, list):
        return blocks
    for call in tool_calls:
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            continue
        fn = call["function"]
        args = fn.get("arguments")
        try:
            parsed = orjson.loads(args) if isinstance(args, str) and args.strip() else {}
        except orjson.JSONDecodeError:
            parsed = args  # not JSON: Anthropic answers a 400 naming the field
        blocks.append(
            _with_cache({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": parsed}, call)
        )
    return blocks


def _tool_result(msg: dict[str, Any]) -> dict[str, Any]:
    content = msg.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
    if isinstance(content, str):
        result["content"] = content
    else:  # parts: the kinds a tool_result may hold; none at all is a result without content
        blocks = [b for b in _content_blocks(content) if b.get("type") in ("text", "image", "document")]
        if blocks:
            result["content"] = blocks
    return _with_cache(result, msg)


def _convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system text blocks, alternating Anthropic messages)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role in ("system", "developer"):
            content = msg.get("content")
            parts = content if isinstance(content, list) else [{"type": "text", "text": _text_of(content)}]
            for part in parts:
                if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"]:
                    system.append(_with_cache({"type": "text", "text": part["text"]}, part))
            continue
        if role == "assistant":
            blocks = _content_blocks(msg.get("content")) + _tool_use_blocks(msg.get("tool_calls"))
            anthropic_role = "assistant"
        elif role == "tool":
            blocks = [_tool_result(msg)]
            anthropic_role = "user"
        else:  # user, and legacy roles Anthropic has no name for
            blocks = _content_blocks(msg.get("content"))
            anthropic_role = "user"
        if not blocks:
            continue
        if turns and turns[-1]["role"] == anthropic_role:
            previous = turns[-1]["content"]
            # tool results must open the user turn that answers the tool calls
            if role == "tool":
                results = [b for b in previous if b.get("type") == "tool_result"]
                turns[-1]["content"] = results + blocks + [b for b in previous if b.get("type") != "tool_result"]
            else:
                previous.extend(blocks)
        else:
            turns.append({"role": anthropic_role, "content": blocks})
    return system, turns


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    raw = body.get("tools")
    for tool in raw if isinstance(raw, list) else []:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            continue
        out: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            out["description"] = fn["description"]
        params = fn.get("parameters")
        out["input_schema"] = params if isinstance(params, dict) else {"type": "object", "properties": {}}
        tools.append(_with_cache(out, tool))
    return tools


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None = None
    if choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    if parallel is False:
        out = {"type": "auto"} if out is None else out
        out["disable_parallel_tool_use"] = True
    return out


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    """The forced tool standing in for `response_format` json_object / json_schema."""
    if not isinstance(response_format, dict):
        return None
    rtype = response_format.get("type")
    if rtype == "json_object":
        return {"name": JSON_TOOL, "description": "Respond with a JSON object.", "input_schema": {"type": "object"}}
    if rtype != "json_schema" or not isinstance(response_format.get("json_schema"), dict):
        return None
    spec = response_format["json_schema"]
    schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else {"type": "object"}
    description = "Respond with a JSON object matching this schema."
    if isinstance(spec.get("description"), str):
        description += " " + spec["description"]
    return {"name": JSON_TOOL, "description": description, "input_schema": schema}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _max_tokens_and_thinking(body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """`max_tokens` (required by Anthropic) and `thinking`, with the thinking budget below max_tokens."""
    explicit = _int(body.get("max_completion_tokens"))
    if explicit is None:
        explicit = _int(body.get("max_tokens"))
    max_tokens = DEFAULT_MAX_TOKENS if explicit is None else explicit
    if isinstance(body.get("thinking"), dict):  # the client's own Anthropic setting wins, as sent
        thinking: dict[str, Any] | None = body["thinking"]
        budget = _int(body["thinking"].get("budget_tokens"))
        if explicit is None and budget is not None:
            max_tokens = budget + DEFAULT_MAX_TOKENS
        return max_tokens, thinking
    effort = body.get("reasoning_effort")
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        return max_tokens, None
    if explicit is None:
        return budget + DEFAULT_MAX_TOKENS, {"type": "enabled", "budget_tokens": budget}  # room for the answer
    if max_tokens <= budget:  # the budget must fit under the client's limit: shrink it, or think not at all
        budget = max_tokens // 2
        if budget < MIN_THINKING_BUDGET:
            return max_tokens, None
    return max_tokens, {"type": "enabled", "budget_tokens": budget}


def build_messages_request(body: dict[str, Any], *, model: str | None) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat request (`model` None: the provider names it elsewhere)."""
    raw_messages = body.get("messages")
    system, messages = _convert_messages(raw_messages if isinstance(raw_messages, list) else [])
    out: dict[str, Any] = {}
    if model is not None:
        out["model"] = model
    max_tokens, thinking = _max_tokens_and_thinking(body)
    out["max_tokens"] = max_tokens
    tools = _tools(body)
    tool_choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")) if tools else None
    json_tool = _json_tool(body.get("response_format"))
    if json_tool is not None:
        # Anthropic forbids forced tool use while thinking; with client tools, forcing would hide them
        forced_ok = not tools and (thinking is None or thinking.get("type") == "disabled")
        tools.append(json_tool)
        if forced_ok:
            tool_choice = {"type": "tool", "name": JSON_TOOL}
        else:
            system.append({"type": "text", "text": JSON_INSTRUCTION})
    if system:
        if any("cache_control" in b for b in system):
            out["system"] = system
        else:
            out["system"] = "\n\n".join(b["text"] for b in system)
    out["messages"] = messages
    if tools:
        out["tools"] = tools
    if tool_choice is not None:
        out["tool_choice"] = tool_choice
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float) and not isinstance(body.get(name), bool):
            out[name] = body[name]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    for name in ANTHROPIC_FIELDS:
        if name in body and name != "thinking":
            out[name] = body[name]
    if thinking is not None:
        out["thinking"] = thinking
    if body.get("stream") is True:
        out["stream"] = True
    return out


class OpenAIAnthropicPair(Translating):
    client_api = "openai"

    def __init__(self, *, provider_api: str) -> None:
        self.provider_api = provider_api
        self.vertex = provider_api == "vertex_anthropic"

    def request(self, body: dict[str, Any], ctx: RequestContext) -> UpstreamRequest:
        if self.vertex:
            out = {"anthropic_version": VERTEX_VERSION, **build_messages_request(body, model=None)}
            return UpstreamRequest(body=encode(finalized(out, ctx)))
        out = build_messages_request(body, model=ctx.model or str(body.get("model") or ""))
        headers = {"anthropic-version": api_version(ctx) or DEFAULT_API_VERSION}
        return UpstreamRequest(body=encode(finalized(out, ctx)), headers=headers)

    def response(self, ctx: RequestContext, *, client_wants_usage: bool) -> ChatFromAnthropic:
        return ChatFromAnthropic(model=ctx.model, client_wants_usage=client_wants_usage, created=int(stamps.now()))


PAIR = OpenAIAnthropicPair(provider_api="anthropic")
VERTEX_PAIR = OpenAIAnthropicPair(provider_api="vertex_anthropic")
