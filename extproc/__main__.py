"""`python -m extproc`: one extproc worker (what `llmgw extproc` and `llmgw run` start)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmgw extproc", description="Run one extproc worker.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from extproc.worker import run  # here: `llmgw` imports this module for the flags alone

    return run(listen=args.listen, config_target=args.config, name=args.name, config_tls_dir=args.config_tls_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default="unix:/tmp/llmgw-extproc.sock",
        help="gRPC address Envoy connects to (unix:PATH or HOST:PORT)",
    )
    parser.add_argument(
        "--config",
        default="unix:/tmp/llmgw-xds.sock",
        help="control plane address serving the extproc config channel",
    )
    parser.add_argument("--name", default="extproc", help="worker name used in logs")
    parser.add_argument(
        "--config-tls-dir",
        default=None,
        help="directory with ca.crt, tls.crt, tls.key: mutual TLS to the config channel (Kubernetes data planes)",
    )


if __name__ == "__main__":
    sys.exit(main())
