"""The data commands: ``gleam simulate`` (a synthetic set), ``gleam info`` (what a file holds)
and ``gleam convert`` (raw data to the fastMRI layout)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``simulate``, ``info`` and ``convert`` on ``gleam``'s subparsers."""
    p = subparsers.add_parser(
        "simulate",
        help="write a synthetic multi-coil data set in the fastMRI HDF5 layout",
        description="Simulate phantoms (or real anatomy from a NIfTI volume) with coil maps, "
        "phase and noise, and write fully sampled k-space to OUT_DIR/{train,val,test}/*.h5.",
    )
    p.add_argument("out_dir", type=Path, help="output folder")
    p.add_argument("--kind", choices=["2d", "3d", "cine"], default="2d", help="data kind")
    p.add_argument("--n", type=int, default=12, help="number of files (volumes), all splits")
    p.add_argument("--slices", type=int, default=4, help="slices (2D) / slabs / series per file")
    p.add_argument("--shape", default=None, help="image size: HxW (2d), ZxHxW (3d), TxHxW (cine)")
    p.add_argument("--coils", type=int, default=8, help="number of receive coils")
    p.add_argument(
        "--snr",
        "--snr-db",
        default="40",
        help="k-space SNR in dB, or 'measured': the noise level of the --coils-from scan",
    )
    p.add_argument(
        "--anatomy",
        type=Path,
        default=None,
        help="NIfTI magnitude volume to use, or mni152 (the template inside nilearn)",
    )
    p.add_argument(
        "--coils-from",
        type=Path,
        default=None,
        help="real k-space (.npy (C, H, W) or fastMRI .h5) whose ESPIRiT maps, perturbed per "
        "slice, replace the simulated coils",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_simulate)

    p = subparsers.add_parser(
        "info",
        help="describe fastMRI-layout HDF5 files without loading them",
        description="Print each file's kind, k-space shape, slices and what it holds "
        "(target, maps, mask, header), reading no array data.",
    )
    p.add_argument("files", nargs="+", type=Path, help="fastMRI-layout .h5 files")
    p.set_defaults(func=run_info)

    p = subparsers.add_parser(
        "convert",
        help="convert raw data (ISMRMRD .h5, Siemens twix .dat, BART .cfl) to the fastMRI layout",
        description="Read raw k-space (ISMRMRD HDF5 with the header's encoding limits, "
        "Siemens twix via twixtools with the readout oversampling removed, or BART CFL) and "
        "write OUT/<name>.h5 in the fastMRI layout (kspace, mask, reconstruction_rss when "
        "fully sampled, ismrmrd_header). A fastMRI-layout .h5 with --maps espirit is copied "
        "with ESPIRiT coil maps added.",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="raw-data files")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--slices",
        choices=("native", "readout"),
        default="native",
        help="native (default): slices as acquired (a 3D acquisition stays one 3D volume); "
        "readout: a 3D Cartesian acquisition (ISMRMRD with kspace_encode_step_2, BART CFL with "
        "PHS2 > 1) as 2D slices, one per readout position x, k-space (x, coils, ky, kz) after "
        "an inverse FFT along kx and readout oversampling removal, for 2D training with a "
        "Poisson-disc mask over (ky, kz) as the GLEAM paper's mridata.org knees "
        "(configs/paper-*-knee*.yaml). Undersampled acquisitions keep zeros where nothing was "
        "measured and get no reconstruction_rss",
    )
    p.add_argument(
        "--maps",
        choices=("none", "espirit"),
        default="none",
        help="a fastMRI-layout .h5: espirit writes a copy with ESPIRiT maps (what the Java "
        "engine needs); with --slices readout: espirit also stores ESPIRiT coil maps per slice "
        "(20 x 20 calibration of the fully sampled k-space, as the GLEAM code prepares the "
        "knees) for configs with data.maps: file; about 2 s per slice of 8 x 320 x 256 on one "
        "CPU thread",
    )
    p.add_argument(
        "--partitions",
        choices=("kz", "slice-kz", "slice-z"),
        default="kz",
        help="ISMRMRD 3D: where the partitions are. kz (default): kspace_encode_step_2; "
        "slice-kz: the slice counter holds kz; slice-z: the slice counter holds image-space z, "
        "Fourier-transformed to kz after a (-1)^n modulation (how the GLEAM code's data "
        "preparation, meddlr's format_mridata_org.py, reads the mridata.org knees; see "
        "docs/paper-scale.md)",
    )
    p.set_defaults(func=run_convert)


def run_simulate(args: argparse.Namespace) -> int:
    """Write the synthetic data set the arguments describe; 0 on success."""
    from gleam_mri.data.synthetic import SyntheticSpec, parse_shape, write_synthetic_dataset

    snr = args.snr
    if snr != "measured":
        try:
            snr = float(snr)
        except ValueError:
            raise ValueError(f"--snr must be a number (dB) or 'measured', got {snr!r}") from None
    spec = SyntheticSpec(
        kind=args.kind,
        n_volumes=args.n,
        slices_per_volume=args.slices,
        shape=parse_shape(args.shape),
        n_coils=args.coils,
        snr_db=snr,
        anatomy=str(args.anatomy) if args.anatomy else None,
        coils_from=str(args.coils_from) if args.coils_from else None,
        seed=args.seed,
    )
    written = write_synthetic_dataset(args.out_dir, spec, progress=not args.quiet)
    for split, files in written.items():
        print(f"{split}: {len(files)} files in {Path(args.out_dir) / split}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print what each file holds, reading no array; 0 on success."""
    from gleam_mri.data.fastmri import inspect_fastmri

    for path in args.files:
        info = inspect_fastmri(path)
        print(f"{path}: {info}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Convert each raw-data file into OUT; 0 on success."""
    from gleam_mri.data.convert import convert

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.inputs:
        out = out_dir / f"{Path(path).stem}.h5"
        target = convert(path, out, slices=args.slices, maps=args.maps, partitions=args.partitions)
        print(f"{path} -> {target}")
    return 0
