"""Fake guardrail services for tests: one local HTTP server speaking every guard protocol llmgw calls.

Each answers like the real service, decided by markers in the text it is sent, and records
every request (method, path, query, headers, parsed JSON body) in `requests`:

- agentgateway's guardrail webhook: `POST /request` `{"body": {"messages": [...]}}` and
  `POST /response` `{"body": {"choices": [{"message": ...}]}}`; text containing `REJECTME` gets a
  reject action (`status_code` 451, body "blocked by the webhook"), `MASKME` a mask action with
  it replaced by `[webhook-masked]` in every message/choice, anything else a pass action.
- OpenAI moderations: `POST /v1/moderations` `{"input": [...], "model"}` (needs a Bearer key);
  `FLAGME` in any input is flagged.
- Bedrock ApplyGuardrail: `POST /guardrail/{id}/version/{v}/apply` (needs a SigV4 Authorization
  for service `bedrock`); `BLOCKME` intervenes with a BLOCKED assessment, `ANONYMIZEME` with an
  ANONYMIZED one and outputs where it reads `{ANONYMIZED}`.
- Google Model Armor: `POST /v1/projects/P/locations/L/templates/T:sanitizeUserPrompt` or
  `:sanitizeModelResponse` (needs a Bearer token); `BLOCKME` is a `MATCH_FOUND` RAI filter.
- Azure AI Content Safety: `POST /contentsafety/text:analyze` (severity 6 for Hate on `BLOCKME`,
  a blocklist hit on `BLOCKLISTME`) and `text:detectJailbreak` (`JAILBREAKME`).

`mode` makes every answer fail: `"error"` (HTTP 500) or `"hang"` (no answer for `hang_s`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, ")


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    client_port: int = 0  # the caller's TCP port: equal ports mean a reused connection


@dataclass
class FakeGuardrails:
    requests: list[Recorded] = field(default_factory=list)
    mode: str = "normal"  # normal | error | hang
    hang_s: float = 10.0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> FakeGuardrails:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real services

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                headers = {k.lower(): v for k, v in self.headers.items()}
                rec = Recorded("POST", parts.path, parts.query, headers, body, self.client_address[1])
                with fake._lock:
                    fake.requests.append(rec)
                if fake.mode == "hang":
                    time.sleep(fake.hang_s)
                    return
                if fake.mode == "error":
                    self._send(500, {"error": "guardrail service is down"})
                    return
                status, answer = fake.answer(rec)
                self._send(status, answer)

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-guardrails", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
        self.mode = "normal"

    # --- protocols ------------------------------------------------------------------------------

    def answer(self, rec: Recorded) -> tuple[int, Any]:
        path = rec.path
        if path in ("/request", "/response"):
            return 200, self._webhook(rec)
        if path == "/v1/moderations":
            return self._moderation(rec)
        if path.startswith("/guardrail/") and path.endswith("/apply"):
            return self._bedrock(rec)
        if path.startswith("/v1/projects/") and (
            path.endswith(":sanitizeUserPrompt") or path.endswith(":sanitizeModelResponse")
        ):
            return self._model_armor(rec)
        if path in ("/contentsafety/text:analyze", "/contentsafety/text:detectJailbreak"):
            return self._azure(rec)
        return 404, {"error": f"no such path {path}"}

    def _webhook(self, rec: Recorded) -> dict[str, Any]:
        body = rec.body["body"]
        if rec.path == "/request":
            messages = body["messages"]
            texts = [m["content"] for m in messages]
        else:
            messages = body["choices"]
            texts = [c["message"]["content"] for c in messages]
        joined = "\n".join(texts)
        if "REJECTME" in joined:
            return {"action": {"body": "blocked by the webhook", "status_code": 451, "reason": "marker"}}
        if "MASKME" in joined:
            if rec.path == "/request":
                masked = [{**m, "content": m["content"].replace("MASKME", "[webhook-masked]")} for m in messages]
                return {"action": {"body": {"messages": masked}, "reason": "masked"}}
            choices = [
                {"message": {**c["message"], "content": c["message"]["content"].replace("MASKME", "[webhook-masked]")}}
                for c in messages
            ]
            return {"action": {"body": {"choices": choices}, "reason": "masked"}}
        return {"action": {"reason": "clean"}}

    def _moderation(self, rec: Recorded) -> tuple[int, Any]:
        if not rec.headers.get("authorization", "").startswith("Bearer "):
            return 401, {"error": {"message": "missing key", "type": "invalid_request_error"}}
        inputs = rec.body["input"]
        inputs = inputs if isinstance(inputs, list) else [inputs]
        results = [{"flagged": "FLAGME" in t, "categories": {"harassment": "FLAGME" in t}} for t in inputs]
        return 200, {"id": "modr-1", "model": rec.body.get("model"), "results": results}

    def _bedrock(self, rec: Recorded) -> tuple[int, Any]:
        m = SIGV4.match(rec.headers.get("authorization", ""))
        if m is None or m["service"] != "bedrock" or "x-amz-date" not in rec.headers:
            return 403, {"message": "Missing Authentication Token"}
        texts = [c["text"]["text"] for c in rec.body["content"]]
        if any("BLOCKME" in t for t in texts):
            assessment = {"contentPolicy": {"filters": [{"type": "VIOLENCE", "action": "BLOCKED"}]}}
            return 200, {
                "action": "GUARDRAIL_INTERVENED",
                "outputs": [{"text": "Sorry, blocked."}],
                "assessments": [assessment],
            }
        if any("ANONYMIZEME" in t for t in texts):
            assessment = {"sensitiveInformationPolicy": {"piiEntities": [{"type": "NAME", "action": "ANONYMIZED"}]}}
            outputs = [{"text": t.replace("ANONYMIZEME", "{ANONYMIZED}")} for t in texts]
            return 200, {"action": "GUARDRAIL_INTERVENED", "outputs": outputs, "assessments": [assessment]}
        return 200, {"action": "NONE", "outputs": [], "assessments": [{}]}

    def _model_armor(self, rec: Recorded) -> tuple[int, Any]:
        if not rec.headers.get("authorization", "").startswith("Bearer "):
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        data = rec.body.get("userPromptData") or rec.body.get("modelResponseData") or {}
        found = "BLOCKME" in data.get("text", "")
        state = "MATCH_FOUND" if found else "NO_MATCH_FOUND"
        return 200, {
            "sanitizationResult": {
                "filterMatchState": state,
                "filterResults": {
                    "rai": {"raiFilterResult": {"executionState": "EXECUTION_SUCCESS", "matchState": state}}
                },
            }
        }

    def _azure(self, rec: Recorded) -> tuple[int, Any]:
        if not rec.headers.get("authorization", "").startswith("Bearer ") and not rec.headers.get(
            "ocp-apim-subscription-key"
        ):
            return 401, {"error": {"code": "401", "message": "Access denied"}}
        text = rec.body["text"]
        if rec.path.endswith("detectJailbreak"):
            return 200, {"jailbreakAnalysis": {"detected": "JAILBREAKME" in text}}
        blocklist = (
            [{"blocklistName": "words", "blocklistItemId": "1", "blocklistItemText": "BLOCKLISTME"}]
            if "BLOCKLISTME" in text
            else []
        )
        severity = 6 if "BLOCKME" in text else 0
        return 200, {
            "blocklistsMatch": blocklist,
            "categoriesAnalysis": [
                {"category": "Hate", "severity": severity},
                {"category": "Violence", "severity": 0},
            ],
        }
