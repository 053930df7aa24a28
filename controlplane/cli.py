"""The `llmgw` command: run, validate, controller, extproc, fake-provider."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys

# The supervisor forks children while gRPC threads run; they exec at once, so gRPC's
# fork handlers are not needed (and only log noise).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import uvloop

from controlplane.compile import compile_paths
from controlplane.envoy_admin import DRAIN_TIMEOUT_S
from controlplane.limits import Limits
from controlplane.standalone import Options
from controlplane.standalone import run as run_standalone
from controlplane.xds.tracing import TracingSettings

# Envoy levels at which it logs whole header maps: the ext_proc filter's responses and the
# router's upstream request, i.e. the provider key the gateway injects.
HEADER_DUMPING_LEVELS = ("trace", "debug")
ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "warn", "error", "critical", "off")
UNSAFE_DEBUG_FLAG = "--unsafe-envoy-debug-logs"


def _run(args: argparse.Namespace) -> int:
    if args.envoy_log_level in HEADER_DUMPING_LEVELS:
        if not args.unsafe_envoy_debug_logs:
            print(
                f"llmgw: --envoy-log-level {args.envoy_log_level} makes Envoy print every request's headers, "
                "including the provider API keys the gateway injects. Use info or higher, or add "
                f"{UNSAFE_DEBUG_FLAG} on a machine whose logs nobody else reads.",
                file=sys.stderr,
            )
            return 2
        print(
            f"llmgw: WARNING: Envoy logs at {args.envoy_log_level}: provider API keys WILL appear in its log "
            f"({UNSAFE_DEBUG_FLAG}). Do not use this in production; rotate keys that reached shared logs.",
            file=sys.stderr,
            flush=True,
        )
    limits = Limits(
        request_headers_timeout_s=args.request_headers_timeout,
        request_timeout_s=args.request_timeout,
        idle_timeout_s=args.idle_timeout,
        stream_idle_timeout_s=args.stream_idle_timeout,
        max_connections=args.max_connections,
        connection_buffer_bytes=args.connection_buffer_bytes,
    )
    if problems := limits.validate():
        for problem in problems:
            print(f"llmgw: --{problem}", file=sys.stderr)
        return 2
    soft = _raise_open_file_limit(2 * limits.max_connections + 1024)
    if soft != resource.RLIM_INFINITY and limits.max_connections > soft // 2:
        print(
            f"llmgw: warning: --max-connections {limits.max_connections} is more than half of the open-file "
            f"limit ({soft}); Envoy may run out of descriptors for upstream connections first (raise ulimit -n)",
            file=sys.stderr,
        )
    try:
        tracing = _tracing(args)
    except ValueError as exc:
        print(f"llmgw: {exc}", file=sys.stderr)
        return 2
    opts = Options(
        paths=args.file,
        tracing=tracing,
        workers=args.workers,
        listen_address=args.listen_address,
        limits=limits,
        metrics_port=args.metrics_port,
        ready_port=args.ready_port,
        max_body_bytes=args.max_body_bytes,
        envoy_concurrency=args.envoy_concurrency,
        envoy_log_level=args.envoy_log_level,
        run_dir=args.run_dir,
        watch=not args.no_watch,
        drain_timeout_s=args.drain_timeout,
    )
    return uvloop.run(run_standalone(opts))


def _raise_open_file_limit(wanted: int) -> int:
    """Raise the soft open-file limit towards `wanted` (within the hard limit), as Go programs do; Envoy
    inherits it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def _validate(args: argparse.Namespace) -> int:
    compiled = compile_paths(args.file)
    for note in compiled.notes:
        print(f"info: {note}", file=sys.stderr)
    if compiled.ok:
        assert compiled.ir is not None
        # A match of a rule appears once per virtual host it serves: count each once.
        matches = {r.name for lst in compiled.ir.listeners for vh in lst.virtual_hosts for r in vh.routes}
        print(
            f"ok: {len(compiled.ir.listeners)} listener(s), {len(compiled.ir.backends)} backend(s), "
            f"{len(matches)} route match(es)"
        )
        return 0
    for problem in compiled.problems:
        print(problem, file=sys.stderr)
    print(f"{len(compiled.problems)} problem(s)", file=sys.stderr)
    return 1


def _extproc(args: argparse.Namespace) -> int:
    from extproc.worker import run

    return run(listen=args.listen, config_target=args.config, name=args.name, config_tls_dir=args.config_tls_dir)


def _epp(args: argparse.Namespace) -> int:
    from extproc.picker.epp import run

    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    return run(listen=args.listen, pool=args.pool, endpoints=endpoints, engine=args.engine, objectives=args.objective)


def _tracing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--otlp-endpoint",
        default=os.environ.get("LLMGW_OTLP_ENDPOINT") or None,
        metavar="HOST:PORT",
        help="send OpenTelemetry traces (OTLP/gRPC) to this collector (default: $LLMGW_OTLP_ENDPOINT; none: no traces)",
    )
    parser.add_argument(
        "--trace-sampling",
        action="append",
        default=None,
        metavar="[NAMESPACE/GATEWAY=]PERCENT",
        help="percentage of requests traced, for all Gateways or one (repeatable; default 100)",
    )
    parser.add_argument(
        "--trace-content",
        action="store_true",
        help="put prompts and completions (truncated) on spans: they then reach your trace store",
    )


def _tracing(args: argparse.Namespace) -> TracingSettings | None:
    """The tracing options as settings (None: no collector); ValueError names the bad option."""
    if args.otlp_endpoint:
        return TracingSettings.parse(
            endpoint=args.otlp_endpoint, sampling=args.trace_sampling, record_content=args.trace_content
        )
    for given, option in ((args.trace_sampling, "--trace-sampling"), (args.trace_content, "--trace-content")):
        if given:
            raise ValueError(f"{option} needs --otlp-endpoint (where the traces go)")
    return None


def _controller(args: argparse.Namespace) -> int:
    from controlplane.kubernetes import controller, provision
    from controlplane.kubernetes.client import Kube

    try:
        tracing = _tracing(args)
    except ValueError as exc:
        print(f"llmgw: {exc}", file=sys.stderr)
        return 2

    namespace = args.namespace or os.environ.get("POD_NAMESPACE") or "llmgw-system"
    host, _, port = args.xds_address.rpartition(":")
    kube = Kube.connect(kubeconfig=args.kubeconfig, context=args.context)
    image = args.dataplane_image or controller.own_image(kube, namespace=namespace, pod=os.environ.get("POD_NAME", ""))
    opts = controller.Options(
        settings=provision.Settings(
            image=image,
            xds_host=args.xds_service or f"llmgw-controller.{namespace}.svc.cluster.local",
            xds_port=int(port),
            xds_tls=not args.xds_plaintext,
        ),
        namespace=namespace,
        identity=args.identity or os.environ.get("POD_NAME", ""),
        xds_listen=args.xds_address,
        health_listen=(host or "0.0.0.0", args.health_port),
        leader_election=not args.no_leader_election,
        lease_name=args.lease_name,
        resync_s=args.resync,
        tracing=tracing,
    )
    return uvloop.run(controller.run(kube, opts))


def _fake_provider(args: argparse.Namespace) -> int:
    from fakeprovider import cli

    return cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmgw", description="Kubernetes-native LLM gateway on Envoy.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the standalone gateway from manifest files (hot-reloaded)")
    run.add_argument(
        "-f",
        "--file",
        action="extend",
        nargs="+",
        required=True,
        help="manifest files or directories (-f a b, or -f a -f b)",
    )
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="extproc worker processes")
    run.add_argument("--listen-address", default="0.0.0.0", help="address for Gateway listeners")
    run.add_argument("--metrics-port", type=int, default=15020)
    run.add_argument("--ready-port", type=int, default=15021)
    run.add_argument(
        "--max-body-bytes",
        type=int,
        default=10 * 1024 * 1024,
        help="largest request body accepted (default 10 MiB)",
    )
    run.add_argument("--envoy-concurrency", type=int, default=0, help="Envoy worker threads (0: one per core)")
    run.add_argument(
        "--envoy-log-level",
        default="warning",
        choices=ENVOY_LOG_LEVELS,
        help="Envoy's log level; debug and trace print request headers (keys) and need " + UNSAFE_DEBUG_FLAG,
    )
    run.add_argument(
        UNSAFE_DEBUG_FLAG,
        action="store_true",
        help="allow --envoy-log-level debug/trace although Envoy then logs the provider API keys it injects",
    )
    defaults = Limits()
    run.add_argument(
        "--request-headers-timeout",
        type=float,
        default=defaults.request_headers_timeout_s,
        metavar="SECONDS",
        help="time a client has to send a request's headers, from their first byte (0: none)",
    )
    run.add_argument(
        "--request-timeout",
        type=float,
        default=defaults.request_timeout_s,
        metavar="SECONDS",
        help="time a client has to send a whole request, body included; never cuts a response (0: none)",
    )
    run.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout_s,
        metavar="SECONDS",
        help="close a client connection with no request in flight after this long (0: never)",
    )
    run.add_argument(
        "--stream-idle-timeout",
        type=float,
        default=defaults.stream_idle_timeout_s,
        metavar="SECONDS",
        help="end a request with no activity in either direction for this long (0: never)",
    )
    run.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help="client connections over all listeners; more are closed at accept (needs twice as many open files)",
    )
    run.add_argument(
        "--connection-buffer-bytes",
        type=int,
        default=defaults.connection_buffer_bytes,
        help="what Envoy reads ahead per client connection (AI routes still buffer up to --max-body-bytes)",
    )
    _tracing_arguments(run)
    run.add_argument("--run-dir", default=None, help="where sockets and the bootstrap go (default: a temp dir)")
    run.add_argument("--no-watch", action="store_true", help="do not reload on file changes")
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT_S,
        help="seconds in-flight requests get to finish after SIGTERM/SIGINT (a second signal stops at once)",
    )
    run.set_defaults(func=_run)

    val = sub.add_parser("validate", help="check manifests; print every problem with file, object and field")
    val.add_argument(
        "-f",
        "--file",
        action="extend",
        nargs="+",
        required=True,
        help="manifest files or directories (-f a b, or -f a -f b)",
    )
    val.set_defaults(func=_validate)

    ext = sub.add_parser("extproc", help="run one extproc worker (e.g. as a sidecar)")
    from extproc.__main__ import add_arguments as extproc_args

    extproc_args(ext)
    ext.set_defaults(func=_extproc)

    ctl = sub.add_parser("controller", help="run the Kubernetes controller (in a cluster, or from a kubeconfig)")
    ctl.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else KUBECONFIG/~/.kube)"
    )
    ctl.add_argument("--context", default=None, help="kubeconfig context")
    _tracing_arguments(ctl)
    ctl.add_argument(
        "--namespace", default=None, help="the controller's namespace, for its Lease (default: POD_NAMESPACE)"
    )
    ctl.add_argument("--identity", default=None, help="this replica's name in the Lease (default: POD_NAME)")
    ctl.add_argument(
        "--xds-address", default="0.0.0.0:18000", help="where ADS and the extproc config channel listen (HOST:PORT)"
    )
    ctl.add_argument(
        "--xds-service",
        default=None,
        help="host name data plane pods reach that port by (default: llmgw-controller.<namespace>.svc.cluster.local)",
    )
    ctl.add_argument(
        "--xds-plaintext",
        action="store_true",
        help="serve ADS and the config channel without mutual TLS (they carry keys: only where a service mesh "
        "already encrypts and authenticates pod traffic; docs/https.md)",
    )
    ctl.add_argument(
        "--dataplane-image",
        default=os.environ.get("LLMGW_IMAGE"),
        help="image of provisioned data planes (default: LLMGW_IMAGE, else the controller's own image)",
    )
    ctl.add_argument("--health-port", type=int, default=8081, help="/healthz and /readyz")
    ctl.add_argument("--lease-name", default="llmgw-controller")
    ctl.add_argument("--no-leader-election", action="store_true", help="write status without holding the Lease")
    ctl.add_argument("--resync", type=float, default=600.0, help="seconds between full re-lists")
    ctl.set_defaults(func=_controller)

    epp = sub.add_parser(
        "epp", help="run llmgw's endpoint picker as an InferencePool's EPP (GIE protocol, for any gateway)"
    )
    epp.add_argument("--listen", default="0.0.0.0:9002", help="gRPC address (HOST:PORT) of ext_proc and health")
    epp.add_argument("--pool", default="default/pool", help="the InferencePool <namespace>/<name> (metric label)")
    epp.add_argument(
        "--endpoints",
        default="",
        help="ip:port,... of the model servers, for gateways that send no subset hint (llmgw sends one)",
    )
    epp.add_argument("--engine", default="vllm", choices=("vllm", "sglang", "tgi"), help="model server metric names")
    epp.add_argument(
        "--objective", action="append", default=[], help="NAME=PRIORITY of an InferenceObjective (repeatable)"
    )
    epp.set_defaults(func=_epp)

    fake = sub.add_parser("fake-provider", help="run the bundled fake OpenAI-compatible provider")
    from fakeprovider import cli as fake_cli

    fake_cli.add_arguments(fake)
    fake.set_defaults(func=_fake_provider)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("LLMGW_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
