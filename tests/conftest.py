"""Shared fixtures: seeded generators, the read-only real-data folder, the torch device list."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# the read-only fixtures beside the checkout (../shared/data), or where GLEAM_SHARED_DATA points
SHARED_DATA = Path(
    os.environ.get("GLEAM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def shared_data() -> Path:
    """The real MRI fixtures beside the project; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent on this machine")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """One torch thread: on tiny tensors thread start-up dominates (2-core CI machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
