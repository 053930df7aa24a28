"""Fixtures: the in-process API server and an official-client connection to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from controlplane.kubernetes.client import Kube
from tests.k8s.apiserver import ApiServer


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    server = ApiServer(bookmark_interval=0.2).start()
    try:
        yield server
    finally:
        server.stop()


def configuration(server: ApiServer) -> k8s.Configuration:
    cfg = k8s.Configuration()
    cfg.host = server.url
    return cfg


@pytest.fixture
def kube(apiserver: ApiServer) -> Iterator[Kube]:
    client = Kube.for_configuration(configuration(apiserver))
    try:
        yield client
    finally:
        client.close()
