"""Where the guarded text is in each client schema: slots that can be read and rewritten in place.

Guards run on the client's own schema (before translation on the request, after it on
the response), so these few shapes cover every provider. Scopes follow agentgateway
(crates/llm/src/types/*.rs `visit_text_mut`): `SystemPrompt` (system/developer
messages, Anthropic `system`, Responses `instructions`), `Messages` (user/assistant
text), `ToolInput` (tool-call arguments: OpenAI's JSON-in-a-string as one text,
Anthropic's `tool_use.input` string by string) and `ToolOutput` (tool results).
Thinking blocks, images and other non-text parts are not visited (a mask would
break their integrity checks, and they carry no plain text).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Slot:
    """One string in a parsed body: `holder[key]`."""

    scope: str
    role: str
    message: int  # index of the message it belongs to (webhook messages are per message)
    holder: Any
    key: Any

    @property
    def text(self) -> str:
        return str(self.holder[self.key])

    def set(self, value: str) -> None:
        self.holder[self.key] = value


def _scope_of_role(role: str) -> str:
    if role in ("system", "developer"):
        return "SystemPrompt"
    if role in ("tool", "function"):
        return "ToolOutput"
    return "Messages"


def _strings(node: Any, scope: str, role: str, message: int) -> Iterator[Slot]:
    """Every string inside a JSON value (tool input objects, tool result contents)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield Slot(scope, role, message, node, key)
            else:
                yield from _strings(value, scope, role, message)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, str):
                yield Slot(scope, role, message, node, i)
            else:
                yield from _strings(value, scope, role, message)


def _content(holder: Any, key: Any, scope: str, role: str, message: int, text_types: tuple[str, ...]) -> Iterator[Slot]:
    content = holder.get(key) if isinstance(holder, dict) else None
    if isinstance(content, str):
        yield Slot(scope, role, message, holder, key)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in text_types and isinstance(part.get("text"), str):
                yield Slot(scope, role, message, part, "text")


def request_slots(body: dict[str, Any], op: str) -> list[Slot]:
    """The guarded strings of a request body of operation `op` (extproc.operations names)."""
    if op == "chat_completions":
        return list(_openai_chat(body))
    if op == "messages":
        return list(_anthropic_messages(body))
    if op == "responses":
        return list(_responses(body))
    if op == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return [Slot("Messages", "user", 0, body, "prompt")]
        if isinstance(prompt, list):
            return [Slot("Messages", "user", i, prompt, i) for i, p in enumerate(prompt) if isinstance(p, str)]
    return []


def _openai_chat(body: dict[str, Any]) -> Iterator[Slot]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        role = str(msg.get("role", ""))
        content = msg.get("content")
        if isinstance(content, str):  # the common case, without the generic walk
            yield Slot(_scope_of_role(role), role, i, msg, "content")
        elif content is not None:
            yield from _content(msg, "content", _scope_of_role(role), role, i, ("text",))
        if "tool_calls" not in msg and "function_call" not in msg:
            continue
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                yield Slot("ToolInput", role, i, fn, "arguments")
        fn_call = msg.get("function_call")
        if isinstance(fn_call, dict) and isinstance(fn_call.get("arguments"), str):
            yield Slot("ToolInput", role, i, fn_call, "arguments")


def _anthropic_messages(body: dict[str, Any]) -> Iterator[Slot]:
    yield from _content(body, "system", "SystemPrompt", "system", -1, ("text",))
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        role = str(msg.get("role", ""))
        yield from _content(msg, "content", "Messages", role, i, ("text",))
        parts = msg.get("content")
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            ptype = part.get("type")
            if ptype in ("tool_use", "server_tool_use", "mcp_tool_use"):
                yield from _strings(part.get("input"), "ToolInput", role, i)
            elif ptype == "tool_result" or (isinstance(ptype, str) and ptype.endswith("_tool_result")):
                if isinstance(part.get("content"), str):
                    yield Slot("ToolOutput", role, i, part, "content")
                else:
                    yield from _strings(part.get("content"), "ToolOutput", role, i)


def _responses(body: dict[str, Any]) -> Iterator[Slot]:
    if isinstance(body.get("instructions"), str):
        yield Slot("SystemPrompt", "system", -1, body, "instructions")
    items = body.get("input")
    if isinstance(items, str):
        yield Slot("Messages", "user", 0, body, "input")
        return
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        itype = item.get("type", "message")
        role = str(item.get("role", ""))
        if itype == "message":
            yield from _content(item, "content", _scope_of_role(role), role, i, ("input_text", "output_text", "text"))
        elif itype == "function_call" and isinstance(item.get("arguments"), str):
            yield Slot("ToolInput", "assistant", i, item, "arguments")
        elif itype == "function_call_output" and isinstance(item.get("output"), str):
            yield Slot("ToolOutput", "tool", i, item, "output")


def response_slots(body: dict[str, Any], op: str) -> list[Slot]:
    """The guarded strings of a (non-streamed) response in the client's schema."""
    out: list[Slot] = []
    if op == "chat_completions":
        for i, choice in enumerate(body.get("choices") or ()):
            msg = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(msg, dict) and isinstance(msg.get("content"), str):
                out.append(Slot("Messages", str(msg.get("role") or "assistant"), i, msg, "content"))
    elif op == "completions":
        for i, choice in enumerate(body.get("choices") or ()):
            if isinstance(choice, dict) and isinstance(choice.get("text"), str):
                out.append(Slot("Messages", "assistant", i, choice, "text"))
    elif op == "messages":
        for block in body.get("content") or ():
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                out.append(Slot("Messages", "assistant", 0, block, "text"))
    elif op == "responses":
        for item in body.get("output") or ():
            for part in item.get("content") or () if isinstance(item, dict) else ():
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    out.append(Slot("Messages", "assistant", 0, part, "text"))
    return out
