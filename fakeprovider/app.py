"""The fake OpenAI-compatible provider: aiohttp server, request handling, admin API.

One catch-all route serves every path, and the endpoint is picked by the path's
last segments, so whatever prefix the gateway rewrites to (`/v1`, `/openai/v1`,
Azure's `/openai/deployments/D`) reaches the same handler. Every non-admin
request is recorded before anything else happens, so even requests that get a
reset connection show up in `requests`.

Order of handling, chosen so that faults compose predictably:
record → `x-fake-behaviour` override → auth → route (404) → pick faults (and
spend `error_count`) → latency/stall → reset or injected error → validate body
(400) → answer.
"""

from __future__ import annotations

import re
import ssl
import time
from typing import Any

import orjson
from aiohttp import web

from fakeprovider import dialects, respond
from fakeprovider import openai_wire as wire
from fakeprovider.behaviour import Behaviour, BehaviourError, retry_after_header
from fakeprovider.records import DEFAULT_RECORD_LIMIT, RecordedRequest, RequestLog

VLLM_KV_SLOTS = 16  # requests in flight that fill the reported KV cache
_MAX_BODY = 64 * 1024 * 1024
_DEPLOYMENT_RE = re.compile(r"/deployments/([^/]+)/")


class FakeProvider:
    """A running fake provider. Create it with `start_fake_provider`."""

    def __init__(
        self,
        *,
        name: str,
        behaviour: Behaviour,
        record_limit: int,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.name = name
        self.behaviour = behaviour
        """Shared behaviour; mutate it or assign a new one at any time."""
        self._initial = behaviour.merged({})
        self.log = RequestLog(limit=record_limit)
        self.host = ""
        self.port = 0
        self.scheme = "https" if ssl_context is not None else "http"
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        # A vLLM server's load gauges on GET /metrics (what an endpoint picker scrapes): the
        # requests in flight, or what a test set with PUT /_fake/load (waiting, running,
        # kv_cache_usage_perc).
        self.in_flight = 0
        self.load_override: dict[str, float] | None = None
        self.metrics_scrapes: dict[str, int] = {}  # GET /metrics per User-Agent (one per scraper)
        self.app = self._build_app()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of the recorded requests, oldest first."""
        return self.log.snapshot()

    def clear_requests(self) -> None:
        self.log.clear()

    def reset_behaviour(self) -> None:
        """Back to the behaviour the provider was started with."""
        self.behaviour = self._initial.merged({})

    @property
    def url(self) -> str:
        """Base URL a client can connect to (wildcard hosts become loopback)."""
        return f"{self.scheme}://{_connect_host(self.host)}:{self.port}"

    @property
    def listen_url(self) -> str:
        """The address as bound, for the "listening on" line."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def start(self, *, host: str, port: int) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=self._ssl_context, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- app -------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_get("/_fake/healthz", self._healthz)
        app.router.add_get("/_fake/requests", self._get_requests)
        app.router.add_delete("/_fake/requests", self._delete_requests)
        app.router.add_get("/_fake/behaviour", self._get_behaviour)
        app.router.add_put("/_fake/behaviour", self._put_behaviour)
        app.router.add_delete("/_fake/behaviour", self._delete_behaviour)
        app.router.add_put("/_fake/load", self._put_load)
        app.router.add_delete("/_fake/load", self._delete_load)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/{tail:.*}", self._counted)
        app.on_response_prepare.append(self._extra_headers)
        return app

    async def _counted(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await self._handle(request)
        finally:
            self.in_flight -= 1

    async def _put_load(self, request: web.Request) -> web.Response:
        try:
            raw = orjson.loads(await request.read() or b"{}")
            self.load_override = {k: float(raw[k]) for k in ("waiting", "running", "kv_cache_usage_perc") if k in raw}
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            return respond.error_response(400, f"invalid load: {exc}")
        return respond.json_response(orjson.dumps(self.load_override))

    async def _delete_load(self, request: web.Request) -> web.Response:
        self.load_override = None
        return respond.json_response(b"{}")

    async def _metrics(self, request: web.Request) -> web.Response:
        agent = request.headers.get("User-Agent", "")
        self.metrics_scrapes[agent] = self.metrics_scrapes.get(agent, 0) + 1
        load = self.load_override or {}
        running = load.get("running", float(self.in_flight))
        waiting = load.get("waiting", 0.0)
        kv = load.get("kv_cache_usage_perc", min(self.in_flight / VLLM_KV_SLOTS, 1.0))
        text = "".join(
            f'# TYPE {name} gauge\n{name}{{model_name="{self.name}"}} {value}\n'
            for name, value in (
                ("vllm:num_requests_waiting", waiting),
                ("vllm:num_requests_running", running),
                ("vllm:kv_cache_usage_perc", kv),
            )
        )
        return web.Response(text=text, content_type="text/plain")

    async def _extra_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """`response_headers` of the behaviour (shared or this request's override) on provider answers."""
        if request.path.startswith("/_fake/"):
            return
        behaviour = self.behaviour
        override = request.headers.get("x-fake-behaviour")
        if override:
            try:
                behaviour = behaviour.merged(orjson.loads(override))
            except (orjson.JSONDecodeError, BehaviourError):
                return  # _handle answers the 400
        for key, value in (behaviour.response_headers or {}).items():
            response.headers[key] = value

    async def _healthz(self, request: web.Request) -> web.Response:
        return respond.json_response(b'{"status":"ok"}')

    async def _get_requests(self, request: web.Request) -> web.Response:
        return respond.json_response(self.log.to_json())

    async def _delete_requests(self, request: web.Request) -> web.Response:
        self.log.clear()
        return respond.json_response(b"[]")

    async def _get_behaviour(self, request: web.Request) -> web.Response:
        return respond.json_response(orjson.dumps(self.behaviour.to_dict()))

    async def _put_behaviour(self, request: web.Request) -> web.Response:
        try:
            changes = orjson.loads(await request.read() or b"{}")
            self.behaviour = self.behaviour.merged(changes)
        except (orjson.JSONDecodeError, BehaviourError) as exc:
            return respond.error_response(400, f"invalid behaviour: {exc}")
        return respond.json_response(orjson.dumps(self.behaviour.to_dict()))

    async def _delete_behaviour(self, request: web.Request) -> web.Response:
        self.reset_behaviour()
        return respond.json_response(orjson.dumps(self.behaviour.to_dict()))

    # --- provider endpoints ----------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        data = respond.parse_json(body)
        if self.log.limit:
            self.log.append(respond.record_request(request, body, data))

        shared = self.behaviour
        behaviour = shared
        overrides: dict[str, Any] = {}
        override_header = request.headers.get("x-fake-behaviour")
        if override_header:
            try:
                overrides = orjson.loads(override_header)
                behaviour = shared.merged(overrides)
            except (orjson.JSONDecodeError, BehaviourError) as exc:
                return respond.error_response(400, f"invalid x-fake-behaviour header: {exc}")

        if behaviour.require_auth is not None and not respond.authorized(request.headers, behaviour.require_auth):
            return respond.error_response(401, "Incorrect API key provided.")

        dialect = dialects.find(request.method, request.path)
        if dialect is not None:
            streaming = dialect.is_streaming(request.path, data)
            reset, status, cut = respond.take_faults(
                shared, overrides, behaviour, streaming=streaming, model=respond.request_model(request.path, data)
            )
            delay = behaviour.latency_ms + behaviour.stall_before_headers_ms
            if delay > 0:
                await respond.pause(delay / 1000)
            if reset:
                respond.abort(request)
                return web.Response()
            exchange = dialects.Exchange(request, body, data, behaviour, self.name, status, cut)
            return await dialect.respond(exchange)

        route = respond.route(request.method, request.path)
        if route is None:
            return respond.error_response(
                404,
                f"Invalid URL ({request.method} {request.path})",
                error_type="invalid_request_error",
                code="not_found",
            )
        kind, model_id = route
        streaming = (
            kind in (respond.CHAT, respond.COMPLETIONS) and isinstance(data, dict) and data.get("stream") is True
        )
        reset, status, cut = respond.take_faults(
            shared, overrides, behaviour, streaming=streaming, model=respond.request_model(request.path, data)
        )

        delay = behaviour.latency_ms + behaviour.stall_before_headers_ms
        if delay > 0:
            await respond.pause(delay / 1000)
        if reset:
            respond.abort(request)
            return web.Response()
        if status is not None:
            return self._injected_error(behaviour, status)

        if kind == respond.MODELS:
            return respond.json_response(wire.MODELS_BODY)
        if kind == respond.MODEL:
            return respond.json_response(wire.model_object(model_id))
        if data is respond.INVALID_JSON or not isinstance(data, dict):
            return respond.error_response(400, "We could not parse the JSON body of your request.")
        model = data.get("model")
        if model is None and (match := _DEPLOYMENT_RE.search(request.path)):
            model = match.group(1)  # Azure OpenAI: the deployment in the path names the model
        if not isinstance(model, str) or not model:
            return respond.error_response(400, "you must provide a model parameter", param="model")
        reply_model = behaviour.response_model or model

        if kind == respond.EMBEDDINGS:
            return respond.embeddings_response(data, reply_model)
        if kind == respond.CHAT:
            messages = data.get("messages")
            if not isinstance(messages, list) or not messages:
                return respond.error_response(400, "'messages' must be a non-empty array", param="messages")
            prompt, prompt_tokens = wire.chat_prompt(messages)
        else:
            parsed = wire.completion_prompt(data.get("prompt"))
            if parsed is None:
                return respond.error_response(400, "'prompt' must be a string or an array", param="prompt")
            prompt, prompt_tokens = parsed
        text = behaviour.response_text
        if text is None:
            text = wire.reply_text(name=self.name, prompt=prompt)
        completion_tokens = wire.count_words(text)
        usage = (wire.chat_usage if kind == respond.CHAT else wire.completion_usage)(prompt_tokens, completion_tokens)
        fields: dict[str, Any] = {
            "completion_id": wire.new_id("chatcmpl-" if kind == respond.CHAT else "cmpl-"),
            "created": int(time.time()),
            "model": reply_model,
        }
        if not streaming:
            build = wire.chat_completion if kind == respond.CHAT else wire.text_completion
            return respond.json_response(build(text=text, usage=usage, **fields))
        options = data.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        stream_events = wire.chat_stream_events if kind == respond.CHAT else wire.completion_stream_events
        events = stream_events(
            pieces=wire.split_text(text, behaviour.chunks),
            usage=usage if include_usage else None,
            **fields,
        )
        return await respond.send_stream(
            request, events, interval_ms=behaviour.chunk_interval_ms, cut=cut, clean=behaviour.cut_cleanly
        )

    def _injected_error(self, behaviour: Behaviour, status: int) -> web.Response:
        message = behaviour.error_message or (f"Injected fault: HTTP {status} from fake provider {self.name}")
        headers = dict(respond.JSON_HEADERS)
        if behaviour.retry_after is not None:
            headers["Retry-After"] = retry_after_header(behaviour.retry_after)
        return web.Response(status=status, body=wire.error_body(status=status, message=message), headers=headers)


async def start_fake_provider(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    behaviour: Behaviour | None = None,
    ssl_context: ssl.SSLContext | None = None,
    name: str = "fake",
    record_limit: int = DEFAULT_RECORD_LIMIT,
) -> FakeProvider:
    """Start a fake provider on the running loop; port 0 picks a free port.

    Raises OSError when the address cannot be bound (e.g. port in use).
    """
    provider = FakeProvider(
        name=name,
        behaviour=behaviour if behaviour is not None else Behaviour(),
        record_limit=record_limit,
        ssl_context=ssl_context,
    )
    await provider.start(host=host, port=port)
    return provider


def _connect_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
