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


@pytest.fixture(scope="session")
def tiny_2d_data(tmp_path_factory):
    """``make(name, seed) -> folder``: 2 synthetic 2D volumes of 2 slices (16 x 12, 3 coils),
    one for training and one for validation, written under a fresh temporary folder."""
    from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset

    def make(name: str, seed: int) -> Path:
        root = tmp_path_factory.mktemp(name) / "data"
        spec = SyntheticSpec(n_volumes=2, slices_per_volume=2, shape=(16, 12), n_coils=3, seed=seed)
        spec.splits = {"train": 0.5, "val": 0.5, "test": 0.0}
        write_synthetic_dataset(root, spec, progress=False)
        return root

    return make


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
