"""OpenAI client -> Google Gemini (`generateContent`, embeddings): the request side and the pair.

Gemini is served by two provider kinds, AI Studio (`gemini`) and Vertex AI (`vertexai`,
Gemini models); both take the same `GenerateContentRequest`, so one pair serves both.
Only embeddings differ (AI Studio `batchEmbedContents`, Vertex `predict`); the pair asks
`ctx.provider.kind` which one it talks to. The response side (JSON, SSE, errors) lives in
`openai_gemini_response`, the JSON-Schema rewrite in `gemini_schema`.

Request mapping (OpenAI chat completions -> Gemini):
- `system`/`developer` messages -> `systemInstruction`; `user`/`assistant` -> `contents`
  with roles `user`/`model`, consecutive turns of one role merged (Gemini wants them
  alternating); `tool` messages -> `functionResponse` parts in a user turn, named from the
  matching assistant tool call; assistant `tool_calls` -> `functionCall` parts (and the
  `extra_content.google.thought_signature` we hand out on responses goes back as
  `thoughtSignature`, which Gemini 3 requires on function-call turns);
- images: `data:` URL -> `inlineData`, other URLs -> `fileData` (MIME type guessed from the
  extension); `input_audio` and `file` data -> `inlineData`;
- `tools` -> one `functionDeclarations` tool (schemas cleaned), `tool_choice` ->
  `toolConfig.functionCallingConfig` (`AUTO`/`NONE`/`ANY` + `allowedFunctionNames`);
- `max_completion_tokens`/`max_tokens` -> `maxOutputTokens`; `temperature`, `top_p`,
  `top_k`, `seed`, `presence_penalty`, `frequency_penalty`, `stop` -> `stopSequences`,
  `n` -> `candidateCount`, `response_format` -> `responseMimeType` (+ `responseSchema`);
- `reasoning_effort` -> `thinkingConfig`: Gemini 2.5 and older take a token budget
  (none 0, minimal/low 1024, medium 8192, high 24576: the budgets Google's own OpenAI
  compatibility layer uses); Gemini 3 models take `thinkingLevel` (none/minimal/low -> low,
  medium/high -> high, the two levels every Gemini 3 model accepts).
OpenAI-only fields Gemini has no place for are dropped (Gemini rejects unknown fields);
Gemini-native top-level fields a client adds (`safetySettings`, `cachedContent`,
`labels`, `generationConfig`, `toolConfig`) pass through, merged over the translation.
The client's body is never modified, so a retried attempt translates the same way.
"""

from __future__ import annotations

import base64
import mimetypes
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import orjson

from extproc.translate import gemini_schema
from extproc.translate.base import RequestContext, Translating, UpstreamRequest, encode, finalized
from extproc.translate.openai_gemini_response import GeminiResponse

PASSTHROUGH = ("safetySettings", "cachedContent", "labels")
THINKING_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
THINKING_LEVELS = {"none": "low", "minimal": "low", "low": "low", "medium": "high", "high": "high"}
_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "ogg": "audio/ogg", "aac": "audio/aac"}


# --- content parts ---------------------------------------------------------------------


def _text(content: Any) -> str:
    """The text of an OpenAI `content` (string, or text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _data_url(url: str) -> tuple[str, str] | None:
    """(mime type, base64 data) of a `data:` URL, None for anything else."""
    if not url.startswith("data:") or "," not in url:
        return None
    meta, _, payload = url[5:].partition(",")
    fields = meta.split(";")
    mime = fields[0] or "text/plain"
    if "base64" in fields[1:]:
        return mime, payload
    return mime, base64.b64encode(unquote_to_bytes(payload)).decode()


def _guess_mime(url: str, default: str) -> str:
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or default


def _media_part(url: str, default_mime: str) -> dict[str, Any] | None:
    if not url:
        return None
    inline = _data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    return {"fileData": {"mimeType": _guess_mime(url, default_mime), "fileUri": url}}


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for item in content if isinstance(content, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        part: dict[str, Any] | None = None
        if kind == "text" and isinstance(item.get("text"), str) and item["text"]:
            part = {"text": item["text"]}
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            part = _media_part(url if isinstance(url, str) else "", "image/jpeg")
        elif kind == "input_audio" and isinstance(item.get("input_audio"), dict):
            audio = item["input_audio"]
            mime = _AUDIO_MIME.get(str(audio.get("format")), f"audio/{audio.get('format')}")
            part = {"inlineData": {"mimeType": mime, "data": audio.get("data", "")}}
        elif kind == "file" and isinstance(item.get("file"), dict):
            file = item["file"]
            url = file.get("file_data") or file.get("file_id") or ""
            part = _media_part(url if isinstance(url, str) else "", "application/pdf")
        if part is not None:
            parts.append(part)
    return parts


def _function_call_part(call: dict[str, Any]) -> dict[str, Any] | None:
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    raw = function.get("arguments")
    try:
        args = orjson.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except orjson.JSONDecodeError:
        args = {}
    part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": args if isinstance(args, dict) else {}}}
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
        part["thoughtSignature"] = google["thought_signature"]
    return part


def _function_response(content: Any) -> dict[str, Any]:
    """Gemini wants an object: a JSON object result as is, anything else under `output`."""
    text = _text(content)
    try:
        value = orjson.loads(text) if text else ""
    except orjson.JSONDecodeError:
        value = text
    return value if isinstance(value, dict) else {"output": value}


# --- messages --------------------------------------------------------------------------


def messages_to_contents(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents) of an OpenAI `messages` list."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}

    def push(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = _text(content)
            if text:
                system.append({"text": text})
        elif role == "user":
            push("user", _user_parts(content))
        elif role == "assistant":
            parts = [{"text": t} for t in [_text(content)] if t]
            calls = message.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                part = _function_call_part(call) if isinstance(call, dict) else None
                if part is not None:
                    parts.append(part)
                    if isinstance(call.get("id"), str):
                        call_names[call["id"]] = part["functionCall"]["name"]
            push("model", parts)
        elif role in ("tool", "function"):
            call_id = message.get("tool_call_id")
            name = call_names.get(call_id, "") if isinstance(call_id, str) else ""
            name = name or (message.get("name") if isinstance(message.get("name"), str) else "") or ""
            push("user", [{"functionResponse": {"name": name, "response": _function_response(content)}}])
    return system, contents


# --- tools and generation config -------------------------------------------------------


def tools_to_gemini(tools: Any) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    native: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        if tool.get("type") == "function" and isinstance(function, dict) and isinstance(function.get("name"), str):
            decl: dict[str, Any] = {"name": function["name"]}
            if isinstance(function.get("description"), str):
                decl["description"] = function["description"]
            params = gemini_schema.to_gemini(function.get("parameters"))
            if isinstance(params, dict) and (params.get("type") != "object" or params.get("properties")):
                decl["parameters"] = params
            declarations.append(decl)
        elif "type" not in tool:
            native.append(tool)  # a Gemini tool as is (googleSearch, codeExecution, ...)
    return ([{"functionDeclarations": declarations}] if declarations else []) + native


def tool_config(choice: Any) -> dict[str, Any] | None:
    if choice == "none":
        mode: dict[str, Any] = {"mode": "NONE"}
    elif choice == "auto":
        mode = {"mode": "AUTO"}
    elif choice == "required":
        mode = {"mode": "ANY"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        mode = {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    else:
        return None
    return {"functionCallingConfig": mode}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def generation_config(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if _number(max_tokens):
        config["maxOutputTokens"] = max_tokens
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if _number(body.get(src)):
            config[dst] = body[src]
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = [s for s in stop if isinstance(s, str)]
    if _number(body.get("n")):
        config["candidateCount"] = body["n"]
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        spec = fmt.get("json_schema")
        if fmt["type"] == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            config["responseSchema"] = gemini_schema.to_gemini(spec["schema"])
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort in THINKING_BUDGETS:
        if "gemini-3" in model:
            config["thinkingConfig"] = {"thinkingLevel": THINKING_LEVELS[effort]}
        else:
            config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
    native = body.get("generationConfig")
    if isinstance(native, dict):  # the client's own Gemini settings win (Gemini rejects budget + level together)
        for key, value in native.items():
            own_level = isinstance(value, dict) and ("thinkingBudget" in value or "thinkingLevel" in value)
            if key == "thinkingConfig" and isinstance(config.get(key), dict) and not own_level:
                config[key] = {**config[key], **value}  # e.g. includeThoughts next to our budget
            else:
                config[key] = value
    return config


def chat_request(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    system, contents = messages_to_contents(body.get("messages"))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = tools_to_gemini(body.get("tools"))
    if tools:
        out["tools"] = tools
    config = tool_config(body.get("tool_choice"))
    if isinstance(body.get("toolConfig"), dict):
        config = body["toolConfig"]
    if config is not None:
        out["toolConfig"] = config
    generation = generation_config(body, model=model)
    if generation:
        out["generationConfig"] = generation
    for key in PASSTHROUGH:
        if key in body:
            out[key] = body[key]
    return out


def completion_request(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Legacy completions: the prompt is one user turn (a list of prompts: the first)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = next((p for p in prompt if isinstance(p, str)), "")
    chat = {**body, "messages": [{"role": "user", "content": prompt if isinstance(prompt, str) else ""}]}
    return chat_request(chat, model=model)


# --- embeddings ------------------------------------------------------------------------


def _embedding_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def embeddings_request(body: dict[str, Any], *, model: str, vertex: bool) -> dict[str, Any]:
    """AI Studio `batchEmbedContents`, or Vertex `predict` (token-id inputs have no Gemini form)."""
    texts = _embedding_texts(body.get("input"))
    dimensions = body.get("dimensions")
    task = body.get("task_type")
    if vertex:
        instances = [{"content": t, **({"task_type": task} if isinstance(task, str) else {})} for t in texts]
        out: dict[str, Any] = {"instances": instances}
        if _number(dimensions):
            out["parameters"] = {"outputDimensionality": dimensions}
        return out
    name = "models/" + model.removeprefix("models/")
    requests = []
    for text in texts:
        item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if isinstance(task, str):
            item["taskType"] = task
        if _number(dimensions):
            item["outputDimensionality"] = dimensions
        requests.append(item)
    return {"requests": requests}


# --- the pair --------------------------------------------------------------------------


def _is_vertex(ctx: RequestContext) -> bool:
    return ctx.provider is not None and ctx.provider.kind == "vertexai"


class GeminiPair(Translating):
    client_api = "openai"
    provider_api = "gemini"

    def request(self, body: dict[str, Any], ctx: RequestContext) -> UpstreamRequest:
        model = ctx.model or (body["model"] if isinstance(body.get("model"), str) else "")
        if ctx.op == "embeddings":
            out = embeddings_request(body, model=model, vertex=_is_vertex(ctx))
        elif ctx.op == "completions":
            out = completion_request(body, model=model)
        else:
            out = chat_request(body, model=model)
        return UpstreamRequest(body=encode(finalized(out, ctx)), headers={"content-type": "application/json"})

    def response(self, ctx: RequestContext, *, client_wants_usage: bool) -> GeminiResponse:
        return GeminiResponse(ctx, client_wants_usage=client_wants_usage, vertex=_is_vertex(ctx))


PAIR = GeminiPair()
