"""Write the seed corpus ``fuzz/corpus/<target>/seed-*``: tiny valid files made with the project's
own writers (and the ``ismrmrd`` package's), plus truncated and edited variants.

Run ``python fuzz/make_seeds.py`` to regenerate them (the seeds are kept in the repository; files
the fuzzer adds to the corpus are kept beside them). Needs ``twixtools`` and ``ismrmrd`` (the
``test`` extra). The whole corpus stays well under 1 MB.
"""

from __future__ import annotations

import ctypes
import io
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
sys.path.insert(0, str(ROOT.parent / "src"))

from gleam_mri.data.cfl import write_cfl  # noqa: E402
from gleam_mri.data.fastmri import write_fastmri  # noqa: E402
from gleam_mri.data.ismrmrd_header import make_ismrmrd_header  # noqa: E402


def _put(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data)


def _variants(target: str, name: str, data: bytes) -> None:
    _put(target, name, data)
    _put(target, f"{name}-cut", data[: len(data) // 2])
    flipped = bytearray(data)
    for i in range(len(flipped) // 3, len(flipped), max(1, len(flipped) // 7)):
        flipped[i] ^= 0xFF
    _put(target, f"{name}-flipped", bytes(flipped))


def _c(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def fastmri_seeds(tmp: Path, rng: np.random.Generator) -> None:
    files = {
        "2d": write_fastmri(tmp / "a.h5", _c(rng, (2, 2, 4, 4))),
        "2d-full": write_fastmri(
            tmp / "b.h5",
            _c(rng, (1, 2, 4, 4)),
            reconstruction_rss=np.ones((1, 4, 4), np.float32),
            mask=np.array([1, 0, 1, 1], np.float32),
            maps=_c(rng, (1, 2, 4, 4)),
            attrs={"acquisition": "AXT1"},
        ),
        "3d": write_fastmri(tmp / "c.h5", _c(rng, (1, 2, 2, 4, 4)), kind="3d"),
        "cine": write_fastmri(
            tmp / "d.h5",
            _c(rng, (1, 1, 3, 4, 4)),
            reconstruction_rss=np.ones((1, 3, 4, 4), np.float32),
            mask=np.ones((3, 4), np.float32),
            kind="cine",
        ),
    }
    for name, path in files.items():
        data = path.read_bytes()
        _put("fastmri", name, data)
        _put("convert", f"fastmri-{name}", data)
    _variants("fastmri", "2d-edit", files["2d"].read_bytes())


def _ismrmrd_file(tmp: Path, name: str, xml: str, lines: list[tuple[np.ndarray, dict]]) -> bytes:
    import ismrmrd

    path = tmp / name
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(xml)
    for data, fields in lines:
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, np.complex64))
        for bit in fields.pop("flags", ()):
            acq.set_flag(bit)
        for key, value in fields.items():
            setattr(acq.idx, key, value)
        dset.append_acquisition(acq)
    dset.close()
    return path.read_bytes()


def ismrmrd_seeds(tmp: Path, rng: np.random.Generator) -> None:
    import ismrmrd

    xml2d = make_ismrmrd_header((8, 4, 1), n_coils=2, n_slices=1).decode()
    lines = [(_c(rng, (2, 8)), {"kspace_encode_step_1": k}) for k in range(4)]
    lines.insert(0, (_c(rng, (2, 8)), {"flags": [ismrmrd.ACQ_IS_NOISE_MEASUREMENT]}))
    data = _ismrmrd_file(tmp, "r2d.h5", xml2d, lines)
    _put("ismrmrd", "2d", data)
    _put("convert", "ismrmrd-2d", data)
    xml3d = make_ismrmrd_header((4, 2, 2), (2, 2, 2), n_coils=1).decode()
    lines = [
        (_c(rng, (1, 4)), {"kspace_encode_step_1": k1, "kspace_encode_step_2": k2})
        for k1 in range(2)
        for k2 in range(2)
    ]
    _variants("ismrmrd", "3d-oversampled", _ismrmrd_file(tmp, "r3d.h5", xml3d, lines))
    xmlcine = make_ismrmrd_header((4, 2, 1), n_coils=1, n_phases=2).decode()
    lines = [
        (_c(rng, (1, 4)), {"kspace_encode_step_1": k, "phase": p, "average": p})
        for k in range(2)
        for p in range(2)
    ]
    _put("ismrmrd", "cine", _ismrmrd_file(tmp, "rcine.h5", xmlcine, lines))
    for name, xml in (("2d", xml2d), ("3d", xml3d), ("cine", xmlcine)):
        _put("ismrmrd_header", name, xml.encode())
    full = make_ismrmrd_header(
        (16, 8, 1), (8, 8, 1), fov_mm=(200, 100, 5), acquisition="CORPD_FBK",
        enc_limits_center=3, enc_limits_max=6, n_coils=4, n_slices=2,
    )  # fmt: skip
    _variants("ismrmrd_header", "full", full)


def _twix_bytes(n_lines: int = 4, n_coils: int = 2, n_col: int = 16) -> bytes:
    """A minimal VD/VE twix file: MultiRaid header, one measurement with a MeasYaps buffer,
    ``n_lines`` image lines, ACQEND."""
    from twixtools import hdr_def, mdh_def

    raid = np.zeros(1, hdr_def.MultiRaidFileHeader)[0]
    raid["hdr"]["count_"] = 1
    yaps = (
        "### ASCCONV BEGIN ###\n"
        "sSliceArray.lSize = 1\n"
        "sSliceArray.asSlice[0].dThickness = 4\n"
        "sSliceArray.asSlice[0].dPhaseFOV = 200\n"
        "sSliceArray.asSlice[0].dReadoutFOV = 200\n"
        f"sKSpace.lBaseResolution = {n_col // 2}\n"
        f"sKSpace.lPhaseEncodingLines = {n_lines}\n"
        "sKSpace.lPartitions = 1\n"
        "sKSpace.ucDimension = 0x2\n"
        'tProtocolName = "fuzz"\n'
        "### ASCCONV END ###\n"
    ).encode()
    buffers = b""
    for name, text in (
        (b"Config", b'<ParamLong."chronSliceIndices">  { 0 -1  }\n'),
        (b"Dicom", b'<ParamString."SoftwareVersions">  { "syngo MR E11"  }\n'),
        (
            b"Meas",
            b'<ParamDouble."flReadoutOSFactor">  { <Precision> 6  2.000000  }\n'
            b'<ParamString."tPatientPosition">  { "HFS"  }\n',
        ),
        (b"MeasYaps", yaps),
    ):
        buffers += name + b"\x00" + struct.pack("<I", len(text)) + text
    hdr_len = 8 + len(buffers)
    hdr_len += (32 - hdr_len % 32) % 32
    header = struct.pack("<II", hdr_len, 4) + buffers
    header += bytes(hdr_len - len(header))
    out = io.BytesIO()
    offset = raid.nbytes
    body = io.BytesIO()
    body.write(header)
    rng = np.random.default_rng(1)
    for line in range(n_lines):
        mdh = mdh_def.Scan_header()
        mdh.SamplesInScan = n_col
        mdh.UsedChannels = n_coils
        mdh.CenterCol = n_col // 2
        mdh.CenterLin = n_lines // 2
        mdh.Counter.Lin = line
        mdh.ScanCounter = line + 1
        size = ctypes.sizeof(mdh_def.Scan_header) + n_coils * (
            ctypes.sizeof(mdh_def.Channel_header) + 8 * n_col
        )
        mdh_def.set_dma_len(mdh, size)
        body.write(bytearray(mdh))
        for c in range(n_coils):
            ch = mdh_def.Channel_header()
            ch.ChannelId = c
            body.write(bytearray(ch))
            body.write(_c(rng, (n_col,)).tobytes())
    end = mdh_def.Scan_header()
    mdh_def.set_flag(end, "ACQEND", True)
    mdh_def.set_dma_len(end, ctypes.sizeof(mdh_def.Scan_header) + 16)
    body.write(bytearray(end))
    body.write(bytes(16))
    length = body.tell()
    raid["entry"][0]["off_"] = offset
    raid["entry"][0]["len_"] = length
    out.write(raid.tobytes())
    out.write(body.getvalue())
    return out.getvalue()


def twix_seeds() -> None:
    data = _twix_bytes()
    _variants("twix", "ve-4lines", data)
    _put("twix", "ve-1line", _twix_bytes(n_lines=1, n_coils=1, n_col=8))
    _put("convert", "twix", data)


def cfl_seeds(tmp: Path, rng: np.random.Generator) -> None:
    for name, array in (
        ("2d", _c(rng, (4, 4, 1, 2))),
        ("3d", _c(rng, (4, 2, 2, 1))),
        ("cine", _c(rng, (4, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2))),
        ("maps", _c(rng, (2, 2, 1, 1, 2))),
    ):
        hdr, cfl = write_cfl(tmp / name, array)
        text = hdr.read_bytes()
        _put("cfl", name, struct.pack("<H", len(text)) + text + cfl.read_bytes())
    text = b"# Dimensions\n4 4 1 1\n# Command\nbart ones 4 4 4 1 1\n"
    _put("cfl", "short-data", struct.pack("<H", len(text)) + text + bytes(8 * 8))


def config_seeds() -> None:
    configs = sorted((ROOT.parent / "configs").glob("*.yaml"))
    for path in configs[:6]:
        _put("config_yaml", path.stem, path.read_bytes())
    _put("config_yaml", "flow", b"model: {name: modl, unrolls: 2, dc: {cg_iters: 3}}\n")
    _put("config_yaml", "alias", b"a: &x [1, 2]\ndata: {mask: {accelerations: *x}}\n")
    sets = (
        "model.unrolls=16\nstrategy.name=greedy\nstrategy.modules=4",
        "data.mask={name: equispaced, center_fractions: [0.08], accelerations: [8]}",
        "optim.lr=1e-3\noptim.scheduler=null\ntrain.loss=l1+ssim",
        "model.dc.cg_iters=10\nssdu.fraction=0.5\ntrain.supervision=self",
        "data.kind=3d\ndata.slab=16\nmodel.dims=3d",
    )
    for i, text in enumerate(sets):
        _put("config_set", str(i), text.encode())


def checkpoint_seeds(tmp: Path) -> None:
    import torch

    from gleam_mri.training.checkpoint import save_checkpoint

    state = {
        "model": {"w": torch.ones(2, 2), "b": torch.zeros(2, dtype=torch.float16)},
        "model_config": {"name": "pgd", "unrolls": 2},
        "step": 3,
        "optimizers": [{"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]}],
    }
    data = save_checkpoint(tmp / "ck.pt", state).read_bytes()
    _variants("checkpoint", "zip", data)
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0), "step": 1}, buf, _use_new_zipfile_serialization=False)
    _put("checkpoint", "legacy", buf.getvalue())


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        fastmri_seeds(tmp_path, rng)
        ismrmrd_seeds(tmp_path, rng)
        twix_seeds()
        cfl_seeds(tmp_path, rng)
        config_seeds()
        checkpoint_seeds(tmp_path)
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"corpus: {sum(1 for p in CORPUS.rglob('seed-*'))} seeds, {total} bytes in all")


if __name__ == "__main__":
    main()
