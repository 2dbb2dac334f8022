"""Container tests run on a real docker engine, with images from WTFLOW_TEST_IMAGE (see .ci/run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import missing_backend
from wtflow.errors import BackendUnavailable
from wtflow.executors import container


@pytest.fixture
def docker_client() -> Iterator[Any]:
    # The product's own probe: it closes the half-made client when the engine does not answer.
    try:
        client = container.client()
    except BackendUnavailable as exc:
        missing_backend(f"no docker engine: {exc}", "WTFLOW_REQUIRE_DOCKER")
    yield client
    client.close()


@pytest.fixture
def image(docker_client: Any) -> str:
    name = os.environ.get("WTFLOW_TEST_IMAGE")
    if not name:
        missing_backend("WTFLOW_TEST_IMAGE is not set (../shared/tools/docker-up --env)", "WTFLOW_REQUIRE_DOCKER")
    return name  # type: ignore[return-value]
