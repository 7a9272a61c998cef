"""SliceDataset / VolumeDataset and MRIBatch: shapes, masks, maps, targets, normalisation,
collation, DataLoader, and bad input."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gleam_mri.crop import center_crop
from gleam_mri.data.batch import MRIBatch, collate_batches
from gleam_mri.data.datasets import SliceDataset, VolumeDataset
from gleam_mri.data.errors import DatasetError, FastMRIFormatError
from gleam_mri.data.fastmri import make_ismrmrd_header, write_fastmri
from gleam_mri.fft import fftnc, ifftnc
from gleam_mri.physics.coils import birdcage_maps, rss

C = 4


def column_mask(kspace_shape: Sequence[int], seed: int | None, center: int = 4) -> torch.Tensor:
    """Stand-in mask function: ``center`` centre columns plus random ones, per frame / partition.

    ``(C, H, W) -> (1, 1, W)``; ``(C, A, H, W) -> (1, A, 1, W)``.
    """
    dims = tuple(kspace_shape[1:])
    lead = dims[:-2]
    width = dims[-1]
    mask = np.random.default_rng(seed).random((*lead, width)) < 0.4
    mask[..., width // 2 - center // 2 : width // 2 - center // 2 + center] = True
    return torch.from_numpy(mask.astype(np.float32)).reshape(1, *lead, 1, width)


def phantom(rng: np.random.Generator, shape: Sequence[int]) -> torch.Tensor:
    """A smooth complex object on a disk, ``shape`` (..., H, W)."""
    h, w = shape[-2:]
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    disk = (xx**2 + yy**2 < 0.6).astype(np.float64)
    noise = rng.standard_normal(tuple(shape)) * 0.1
    image = disk * (1.0 + 0.5 * xx + noise) * np.exp(0.3j * yy)
    return torch.from_numpy(image).to(torch.complex64)


def simulate(rng: np.random.Generator, kind: str, slices: int, dims: Sequence[int]) -> dict:
    """Fully sampled k-space ``(S, C, *D)``, true maps, and the RSS target ``(S, *D)``."""
    fft_ndim = 3 if kind == "3d" else 2
    maps = birdcage_maps(C, dims[-fft_ndim:])
    if kind == "cine":
        maps = maps.unsqueeze(1).expand(C, *dims).contiguous()
    images = phantom(rng, (slices, *dims))
    kspace = fftnc(maps * images[:, None], fft_ndim)
    target = rss(ifftnc(kspace, fft_ndim), dim=1)
    return {"kspace": kspace, "maps": maps.expand(slices, C, *dims), "target": target}


@pytest.fixture
def folder2d(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Two 2D files: ``a.h5`` (3 slices, 12 x 16) and ``b.h5`` (2 slices), cropped targets."""
    for name, slices in (("a.h5", 3), ("b.h5", 2)):
        data = simulate(rng, "2d", slices, (12, 16))
        write_fastmri(
            tmp_path / name,
            data["kspace"],
            reconstruction_rss=data["target"][..., 2:10, 4:12],
            maps=data["maps"],
            attrs={"acquisition": "AXT1"},
        )
    return tmp_path


def volume_file(path: Path, rng: np.random.Generator, kind: str) -> Path:
    data = simulate(rng, kind, 2, (4, 8, 6))
    return write_fastmri(
        path, data["kspace"], reconstruction_rss=data["target"], maps=data["maps"], kind=kind
    )


def test_slice_dataset_item_shapes(folder2d: Path) -> None:
    ds = SliceDataset(folder2d, mask_func=column_mask)
    assert len(ds) == 5
    batch = ds[4]
    assert isinstance(batch, MRIBatch) and batch.batch_size == 1 and batch.fft_ndim == 2
    assert batch.kspace.shape == (1, C, 12, 16) and batch.kspace.dtype == torch.complex64
    assert batch.maps.shape == (1, C, 12, 16) and batch.maps.dtype == torch.complex64
    assert batch.mask.shape == (1, 1, 1, 16) and batch.mask.dtype == torch.float32
    assert batch.target.shape == (1, 8, 8) and batch.target.dtype == torch.float32
    assert batch.scale.shape == (1,) and batch.scale.dtype == torch.float32
    assert batch.meta[0]["fname"] == "b.h5" and batch.meta[0]["slice"] == 1
    assert batch.meta[0]["acquisition"] == "AXT1"
    assert batch.meta[0]["recon_size"] == (8, 8, 1)
    assert set(batch.mask.unique().tolist()) == {0.0, 1.0}
    assert torch.all(batch.kspace[..., batch.mask[0, 0, 0] == 0] == 0)  # k-space is masked
    zero_filled = batch.operator().adjoint(batch.kspace)
    assert batch.crop_to_target(zero_filled).shape == batch.target.shape


@pytest.mark.parametrize("kind", ["3d", "cine"])
def test_volume_dataset_item_shapes(tmp_path: Path, rng: np.random.Generator, kind: str) -> None:
    volume_file(tmp_path / "v.h5", rng, kind)
    ds = VolumeDataset(tmp_path, mask_func=column_mask, deterministic_masks=True)
    assert len(ds) == 2
    batch = ds[1]
    assert batch.fft_ndim == (3 if kind == "3d" else 2)
    assert batch.kspace.shape == (1, C, 4, 8, 6) and batch.target.shape == (1, 4, 8, 6)
    assert batch.mask.shape == (1, 1, 4, 1, 6)
    assert not torch.equal(batch.mask[0, 0, 0], batch.mask[0, 0, 1])  # varies over Z / T
    # with the true maps the fully sampled SENSE image matches the RSS target
    full = VolumeDataset(tmp_path)[1]
    image = full.operator().adjoint(full.kspace).abs()
    torch.testing.assert_close(image, full.target, rtol=1e-4, atol=1e-5)


def test_deterministic_masks(folder2d: Path) -> None:
    ds = SliceDataset(folder2d, mask_func=column_mask, deterministic_masks=True)
    first = [ds[i].mask for i in range(len(ds))]
    again = [ds[i].mask for i in range(len(ds))]  # a second epoch
    fresh = SliceDataset(folder2d, mask_func=column_mask, deterministic_masks=True, seed=7)
    for i in range(len(ds)):
        assert torch.equal(first[i], again[i]) and torch.equal(first[i], fresh[i].mask)
    assert len({tuple(m.flatten().tolist()) for m in first}) == len(first)  # differ per slice
    assert ds[0].meta[0]["mask_seed"] == fresh[0].meta[0]["mask_seed"]


def test_random_masks_follow_the_dataset_seed(folder2d: Path) -> None:
    ds = SliceDataset(folder2d, mask_func=column_mask, seed=3)
    epoch1 = [ds[i].mask for i in range(len(ds))]
    epoch2 = [ds[i].mask for i in range(len(ds))]
    assert not all(torch.equal(a, b) for a, b in zip(epoch1, epoch2, strict=True))
    replay = SliceDataset(folder2d, mask_func=column_mask, seed=3)
    assert all(torch.equal(a, replay[i].mask) for i, a in enumerate(epoch1))


def test_dataloader_workers_draw_different_masks(folder2d: Path) -> None:
    ds = SliceDataset(folder2d, mask_func=column_mask, seed=0)
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_batches)
    seeds = [batch.meta[0]["mask_seed"] for batch in loader]
    assert len(seeds) == 5 and len(set(seeds)) == 5  # workers do not replay one stream


def test_normalisation_recorded_and_undone(folder2d: Path) -> None:
    raw = SliceDataset(folder2d, mask_func=column_mask, deterministic_masks=True, normalize=False)
    ds = SliceDataset(folder2d, mask_func=column_mask, deterministic_masks=True)
    for i in (0, 3):
        plain, norm = raw[i], ds[i]
        assert plain.scale.item() == 1.0
        peak = plain.operator().adjoint(plain.kspace).abs().max()
        torch.testing.assert_close(norm.scale, peak.reshape(1))
        torch.testing.assert_close(norm.denormalize(norm.kspace), plain.kspace)
        torch.testing.assert_close(norm.denormalize(norm.target), plain.target)
        normed_peak = norm.operator().adjoint(norm.kspace).abs().max()
        torch.testing.assert_close(normed_peak, torch.tensor(1.0))


def test_file_mask_is_used_and_target_rules(tmp_path: Path, rng: np.random.Generator) -> None:
    data = simulate(rng, "2d", 2, (12, 10))
    file_mask = (rng.random(10) < 0.5).astype(np.float32)
    file_mask[4:7] = 1
    masked = data["kspace"] * torch.from_numpy(file_mask)
    write_fastmri(tmp_path / "test.h5", masked, maps=data["maps"], mask=file_mask)
    write_fastmri(tmp_path / "full.h5", data["kspace"], maps=data["maps"])

    def must_not_run(shape: Sequence[int], seed: int | None) -> torch.Tensor:
        raise AssertionError("mask_func must not be called for files with their own mask")

    test_ds = SliceDataset(tmp_path / "test.h5", mask_func=must_not_run, normalize=False)
    batch = test_ds[1]
    assert batch.mask.shape == (1, 1, 1, 10)
    np.testing.assert_array_equal(batch.mask.flatten().numpy(), file_mask)
    assert batch.target is None  # undersampled file without reconstruction_rss
    full = SliceDataset([tmp_path / "full.h5"], normalize=False)[1]  # no mask_func: fully sampled
    assert torch.all(full.mask == 1)
    torch.testing.assert_close(full.target[0], data["target"][1])  # RSS of the coil images


def test_collate_and_dataloader(folder2d: Path) -> None:
    ds = SliceDataset(folder2d, mask_func=column_mask, deterministic_masks=True)
    batch = collate_batches([ds[0], ds[3]])
    assert batch.batch_size == 2 and batch.kspace.shape == (2, C, 12, 16)
    assert [m["fname"] for m in batch.meta] == ["a.h5", "b.h5"]
    torch.testing.assert_close(batch.scale, torch.cat([ds[0].scale, ds[3].scale]))
    assert torch.equal(batch.mask[1], ds[3].mask[0])
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_batches)
    batches = list(loader)
    assert [b.batch_size for b in batches] == [2, 2, 1]
    assert batches[1].target.shape == (2, 8, 8)
    y = batches[0].operator()(torch.ones(2, 12, 16, dtype=torch.complex64))
    assert y.shape == (2, C, 12, 16)
    moved = batches[0].to("cpu")
    assert torch.equal(moved.kspace, batches[0].kspace) and moved.meta == batches[0].meta


def test_collate_rejects_mismatches(
    folder2d: Path, tmp_path: Path, rng: np.random.Generator
) -> None:
    ds = SliceDataset(folder2d, mask_func=column_mask)
    other = tmp_path / "other"
    other.mkdir()
    data = simulate(rng, "2d", 1, (12, 8))
    write_fastmri(other / "c.h5", data["kspace"], maps=data["maps"])
    small = SliceDataset(other)[0]
    with pytest.raises(ValueError, match="cannot collate kspace of different shapes"):
        collate_batches([ds[0], small])
    with pytest.raises(ValueError, match="only some items have a target"):
        collate_batches([ds[0], dataclasses.replace(ds[1], target=None)])
    with pytest.raises(ValueError, match="empty list"):
        collate_batches([])
    with pytest.raises(ValueError, match="no target to crop"):
        dataclasses.replace(ds[0], target=None).crop_to_target(ds[0].target)


def test_batch_validation() -> None:
    k = torch.zeros(2, 3, 6, 5, dtype=torch.complex64)
    good = {
        "kspace": k,
        "mask": torch.ones(2, 1, 1, 5),
        "maps": k.clone(),
        "target": None,
        "scale": torch.ones(2),
    }
    MRIBatch(**good)
    bad = {
        "kspace": (k.real, "kspace must be complex"),
        "maps": (k[:, :2], "maps must be complex"),
        "mask": (torch.ones(2, 1, 5), "mask must be real"),
        "scale": (torch.ones(1), "scale must have shape"),
        "target": (torch.ones(2, 6), "target must be"),
    }
    for name, (value, problem) in bad.items():
        with pytest.raises((ValueError, TypeError), match=problem):
            MRIBatch(**{**good, name: value})
    with pytest.raises(ValueError, match="does not broadcast"):
        MRIBatch(**{**good, "mask": torch.ones(2, 1, 1, 4)})


def test_derived_batches_are_built_without_checking_again(monkeypatch: pytest.MonkeyPatch) -> None:
    k = torch.randn(4, 3, 6, 5, dtype=torch.complex64)
    meta = [{"slice": i} for i in range(4)]
    batch = MRIBatch(k, torch.ones(4, 1, 1, 5), k.clone(), k.abs()[:, 0], torch.ones(4), 2, meta)
    checked = []
    monkeypatch.setattr(MRIBatch, "__post_init__", lambda self: checked.append(self))
    moved, half = batch.to("cpu"), batch.shard(1, 2)
    both = collate_batches([half, batch.shard(0, 2)])
    assert checked == []  # only data entering are checked (the batch above was)
    assert torch.equal(moved.kspace, k) and moved.meta == meta and moved.meta[0] is not meta[0]
    assert torch.equal(half.maps, k[2:]) and half.meta == meta[2:] and half.fft_ndim == 2
    assert torch.equal(both.target, k.abs()[[2, 3, 0, 1], 0]) and len(both.meta) == 4
    monkeypatch.undo()
    with pytest.raises(ValueError, match="meta has 2 entries for a batch of 4"):
        collate_batches([half, dataclasses.replace(half, meta=[])])
    x = torch.arange(2 * 7 * 6.0).reshape(2, 7, 6)
    torch.testing.assert_close(center_crop(x, (3, 4)), x[:, 2:5, 1:5])
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(x, (8, 4))


def test_fastmri_style_file_with_estimated_maps(tmp_path: Path, rng: np.random.Generator) -> None:
    data = simulate(rng, "2d", 2, (24, 20))
    header = make_ismrmrd_header((24, 20, 1), acquisition="CORPD_FBK")
    with h5py.File(tmp_path / "file1.h5", "w") as hf:  # as fastMRI ships them: no maps
        hf.create_dataset("kspace", data=data["kspace"].numpy())
        hf.create_dataset("reconstruction_rss", data=data["target"].numpy())
        hf.create_dataset("ismrmrd_header", data=header)
        hf.attrs.update({"max": float(data["target"].max()), "acquisition": "CORPD_FBK"})
    with pytest.raises(DatasetError, match=r"file1\.h5: no 'maps' dataset; use maps=\"espirit\""):
        SliceDataset(tmp_path)
    calls = []

    def true_maps(kspace: torch.Tensor, mask: torch.Tensor, fft_ndim: int) -> torch.Tensor:
        calls.append((tuple(kspace.shape), tuple(mask.shape), fft_ndim))
        return data["maps"][0]

    batch = SliceDataset(tmp_path, maps=true_maps)[1]
    assert calls == [((C, 24, 20), (1, 1, 20), 2)]
    image = batch.operator().adjoint(batch.kspace).abs()
    torch.testing.assert_close(image, batch.target, rtol=1e-4, atol=1e-5)
    if importlib.util.find_spec("gleam_mri.physics.espirit") is None:
        pytest.skip("gleam_mri.physics.espirit is not available")
    obj = data["target"][1:2] > 0.3 * data["target"].max()  # the object's support
    wide_centre = functools.partial(column_mask, center=10)
    est = SliceDataset(
        tmp_path,
        maps="espirit",
        mask_func=wide_centre,
        deterministic_masks=True,
        espirit_options={"crop": 0.8},
    )
    batch = est[1]
    assert batch.maps.shape == (1, C, 24, 20) and batch.maps.dtype == torch.complex64
    norm2 = batch.maps.abs().pow(2).sum(1)  # ESPIRiT maps: unit norm over the object
    torch.testing.assert_close(norm2[obj], torch.ones_like(norm2[obj]), rtol=0, atol=1e-4)
    opts = {"max_calib_size": 12}
    full = SliceDataset(tmp_path, maps="espirit", espirit_options=opts)[1]  # |A^H y| = RSS
    image = full.operator().adjoint(full.kspace).abs()
    rel = (image - full.target)[obj].norm() / full.target[obj].norm()
    assert rel < 1e-3


def test_dataset_errors(tmp_path: Path, folder2d: Path, rng: np.random.Generator) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"contains no \.h5 files"):
        SliceDataset(empty)
    (empty / "notes.txt").write_text("no data here")
    with pytest.raises(DatasetError, match=r"contains no \.h5 files"):
        SliceDataset(empty)
    with pytest.raises(DatasetError, match="no such file or folder"):
        SliceDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="empty list"):
        SliceDataset([])
    with pytest.raises(DatasetError, match=r"a\.h5: a '2d' file cannot go in a VolumeDataset"):
        VolumeDataset(folder2d)
    vols = tmp_path / "vols"
    vols.mkdir()
    volume_file(vols / "v3.h5", rng, "3d")
    with pytest.raises(DatasetError, match=r"v3\.h5: a '3d' file cannot go in a SliceDataset"):
        SliceDataset(vols)
    volume_file(vols / "vc.h5", rng, "cine")
    with pytest.raises(DatasetError, match="all be of one kind"):
        VolumeDataset(vols)
    with pytest.raises(ValueError, match="maps must be"):
        SliceDataset(folder2d, maps="sense")
    with pytest.raises(TypeError, match="mask_func must be callable"):
        SliceDataset(folder2d, mask_func=4)
    (folder2d / "broken.h5").write_bytes(b"garbage")
    with pytest.raises(FastMRIFormatError, match=r"broken\.h5: not a readable HDF5 file"):
        SliceDataset(folder2d)
    ds = SliceDataset([folder2d / "a.h5"], mask_func=lambda shape, seed: torch.ones(1, 5))
    with pytest.raises(ValueError, match=r"mask_func returned shape \(1, 5\)"):
        ds[0]
