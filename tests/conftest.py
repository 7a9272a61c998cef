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


# tiny 2D networks that gleam export writes (tests/test_onnx.py, tests/test_java_engine.py)
ONNX_MODELS = {
    "pgd": {"unrolls": 2, "features": 4},
    "modl": {"unrolls": 2, "features": 4, "dc": {"cg_iters": 3}},
    "varnet": {"unrolls": 2, "features": 4, "sens_features": 4},
}


def untrained_checkpoint(path: Path, model: dict, kind: str = "2d") -> Path:
    """An untrained network's checkpoint (random weights test an engine as well as trained)."""
    from gleam_mri.config import config_to_dict
    from gleam_mri.training.checkpoint import save_checkpoint
    from gleam_mri.training.run import build_model_for
    from gleam_mri.training.run_config import config_from_dict

    cfg = config_from_dict({"model": model, "train": {"seed": 1}})
    net = build_model_for(cfg, kind, torch.device("cpu"))
    config = config_to_dict(cfg)
    state = {"step": 0, "kind": kind, "config": config, "model_config": config["model"]}
    return save_checkpoint(path, {**state, "model": net.state_dict()})


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """``name -> (checkpoint, model.onnx)`` of each of :data:`ONNX_MODELS`, exported by
    ``gleam export`` once per session (each export takes 10-40 s)."""
    from gleam_mri import cli

    out = {}
    for name, options in ONNX_MODELS.items():
        folder = tmp_path_factory.mktemp(f"onnx-{name}")
        ckpt = untrained_checkpoint(folder / "last.pt", {"name": name, **options})
        assert cli.main(["export", str(ckpt), "-o", str(folder / "model.onnx")]) == 0
        out[name] = (ckpt, folder / "model.onnx")
    return out


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
