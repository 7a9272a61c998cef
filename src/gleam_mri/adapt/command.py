"""``gleam adapt``: scan-specific training and reconstruction of one undersampled scan."""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from gleam_mri.config import config_to_dict
from gleam_mri.training.run_config import config_from_dict

DESCRIPTION = """\
Train an unrolled network on one scan's own measured k-space, with no fully sampled reference
(zero-shot self-supervision, ZS-SSDU), and write its reconstruction like gleam recon does
(OUT/<name>.h5 with dataset 'reconstruction', .nii.gz, .png; --formats as there). The measured
samples are split into three disjoint sets: the network's input, its training loss (drawn afresh
every step) and a fixed validation set; the weights of the best validation step are kept and
training stops when it no longer improves. The network is then compared with l1-wavelet
compressed sensing (its weight chosen on the same validation set) and with their blends (25, 50
or 75% of the network, the rest CS), and whichever predicts the held-out samples best writes the
image, so it is never worse than CS by that measure (2D and cine; --no-cs skips it); a scan with
too few measured lines to train on gets CS alone, and no adapt.pt. The final image uses every
measured sample. Files without coil maps get ESPIRiT or JSENSE maps from their
measured samples, whichever predicts held-out lines better (--maps). The network (a MoDL network
trained greedily, GLEAM; about 5 minutes for a 2D 8-coil 256 x 256 slice on two CPU cores,
--large for a deeper network trained longer) starts from the prior shipped for the scan's kind
(2D: brain-2d, trained on simulated heads; see gleam recon --model), or from scratch where none
fits (--init none: always), or fine-tunes a gleam train checkpoint (--init FILE). Also writes
OUT/adapt.pt (a checkpoint gleam recon reads: the network alone, whichever image was written)
and OUT/adapt.json (the kept step, the validation curve, the comparison with CS, the coil maps,
the time of each part and the peak memory of a training step). The training state is saved at
every validation in OUT/adapt-train/last.pt (removed once the outputs are written): a run that
was killed continues with --resume and ends as if it had not been interrupted."""


def add_parser(sub: Any) -> None:
    """Register ``gleam adapt`` on the sub-command parsers."""
    from gleam_mri.adapt.zero_shot import LARGE_OVERRIDES, LARGE_SCHEDULE, AdaptOptions
    from gleam_mri.recon.coil_maps import MAPS_METHODS

    defaults = AdaptOptions()
    p = sub.add_parser(
        "adapt",
        help="train on one undersampled scan alone (self-supervised) and reconstruct it",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="fastMRI .h5, ISMRMRD .h5, twix .dat or BART .cfl")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--init",
        default=None,
        metavar="FILE|NAME|none",
        help="weights to start from: a gleam train checkpoint, a shipped prior's name, or none "
        "(from scratch); default: the shipped prior of the scan's kind when the network is the "
        "default one, else from scratch",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config of the network (model, strategy, "
        "optim, ssdu sections); default: the built-in MoDL network",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set model.unrolls=10 --set strategy.name=e2e "
        "--set ssdu.units=points",
    )
    p.add_argument(
        "--mask",
        default=None,
        metavar="YAML",
        help="undersample a fully sampled file retrospectively, e.g. "
        "'{name: random, center_fractions: [0.08], accelerations: [4]}'",
    )
    p.add_argument(
        "--large",
        action="store_true",
        help="the larger setting: "
        + ", ".join(f"{k}={v}" for k, v in LARGE_SCHEDULE.items())
        + ", "
        + ", ".join(LARGE_OVERRIDES)
        + " (about 5x the time; explicit options still apply)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help=f"most training steps (default {defaults.steps})"
    )
    p.add_argument(
        "--val-every", type=int, default=defaults.val_every, help="steps between validations"
    )
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help=f"stop after this many validations without improvement (default {defaults.patience})",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=defaults.val_fraction,
        help="share of the measured samples held out for validation",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=defaults.fraction,
        help="share of the training samples held out for the loss each step",
    )
    p.add_argument(
        "--average",
        type=float,
        default=defaults.average,
        help="validate and keep a moving average of the weights with this decay, e.g. 0.99, "
        "warmed up so that at step t it spans about the last t/9 steps (0: the weights of "
        "each step themselves)",
    )
    p.add_argument(
        "--cs",
        action=argparse.BooleanOptionalAction,
        default=defaults.cs,
        help="after training, compare the network, l1-wavelet compressed sensing and their "
        "blends on the held-out samples and write whichever predicts them best (2D and cine; "
        "default: on)",
    )
    p.add_argument(
        "--maps",
        choices=MAPS_METHODS,
        default="auto",
        help="coil maps of a file that has none: ESPIRiT, JSENSE (joint estimation, for small "
        "calibration regions), or auto: whichever predicts held-out lines better, per 2D item "
        "(cine and 3D: ESPIRiT)",
    )
    p.add_argument("--slab", type=int, default=None, help="3D: train on readout slabs of N rows")
    p.add_argument("--overlap", type=int, default=0, help="3D: rows shared by neighbouring slabs")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits and the network")
    p.add_argument(
        "--formats", default="h5,nii,png", help="comma-separated: h5, nii, png, dcm (DICOM)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUT/adapt-train/last.pt (same input and options)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def _options(args: argparse.Namespace):
    from gleam_mri.adapt.zero_shot import LARGE_SCHEDULE, AdaptOptions
    from gleam_mri.schema import build

    raw = dict(LARGE_SCHEDULE) if args.large else {}
    for f in fields(AdaptOptions):  # options given on the command line win
        if getattr(args, f.name, None) is not None:
            raw[f.name] = getattr(args, f.name)
    options = build(AdaptOptions, raw, "")
    for name in ("val_fraction", "fraction"):
        if not 0 < getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must lie in (0, 1)")
    if not 0 <= options.average < 1:
        raise ValueError("--average must lie in [0, 1)")
    return options


def _init_path(init: str | None) -> Path | None:
    """``--init``: a checkpoint file; None for none, the default and a shipped prior's name
    (whose weights :func:`_initial_weights` loads into adapt's own network and config)."""
    if init is None or init == "none" or _prior_name(init) is not None:
        return None
    from gleam_mri.inference.priors import PriorError, resolve_prior

    try:
        return resolve_prior(init)
    except PriorError as err:
        raise ValueError(f"--init {init}: no such file, and {err}") from None


def _prior_name(init: str | None) -> str | None:
    """``init`` when it names a shipped prior (and no file of that name exists), else None."""
    from gleam_mri.inference.priors import prior_names

    if init is None or Path(init).exists():
        return None
    return init if init in prior_names() else None


def _initial_weights(args, cfg, scan, initial) -> tuple[dict | None, str]:
    """The weights adapt starts from and where they come from (for the output and adapt.json):
    ``--init``'s checkpoint, else the shipped prior ``--init`` names or, by default, the one of
    the scan's kind, when its network is the one trained (the same path either way)."""
    if initial is not None:
        return initial, str(args.init)
    if args.init == "none" or args.config is not None:
        return None, "scratch"
    from gleam_mri.inference.priors import shipped_start

    name = _prior_name(args.init)
    weights, start = shipped_start(scan.kind, config_to_dict(cfg)["model"], name)
    if name is not None and weights is None:
        raise ValueError(f"--init {name}: {start.removeprefix('scratch (').rstrip(')')}")
    return weights, start


def run_command(args: argparse.Namespace) -> int:
    """``gleam adapt``: load, train, reconstruct, write; prints what was kept and the memory."""
    from gleam_mri.adapt.zero_shot import LARGE_OVERRIDES
    from gleam_mri.inference import is_fastmri_layout
    from gleam_mri.training.run_config import load_config

    options = _options(args)
    from gleam_mri.physics.masks import mask_spec_from_yaml

    mask_spec = mask_spec_from_yaml(args.mask)
    init = _init_path(args.init)
    if args.config is not None:
        cfg = load_config(args.config)
        base, initial = config_to_dict(cfg), None
        if init is not None:
            raise ValueError("give --config or --init, not both (a checkpoint has its own config)")
    else:
        from gleam_mri.adapt.zero_shot import adapt_config

        cfg, initial = adapt_config(init, args.device)
        base = config_to_dict(cfg)
    base["train"].update({"supervision": "self", "device": args.device, "seed": args.seed})
    if mask_spec is not None:  # recorded, so gleam recon with adapt.pt undersamples alike
        base["data"]["mask"] = mask_spec
    if args.slab is not None:
        base["data"].update({"slab": args.slab, "slab_overlap": args.overlap})
    cfg = config_from_dict(base, [*(LARGE_OVERRIDES if args.large else []), *args.set])
    path = Path(args.input)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if is_fastmri_layout(path):
        return _adapt_file(path, path.stem, cfg, options, initial, mask_spec, args)
    from gleam_mri.data.convert import convert

    with tempfile.TemporaryDirectory() as tmp:
        converted = convert(path, Path(tmp) / f"{path.stem}.h5")
        return _adapt_file(converted, path.stem, cfg, options, initial, mask_spec, args)


def _adapt_file(path, stem, cfg, options, initial, mask_spec, args) -> int:
    from gleam_mri.adapt.scan import load_scan
    from gleam_mri.adapt.zero_shot import adapt, remove_state, save_adapted
    from gleam_mri.inference import write_outputs
    from gleam_mri.recon.coil_maps import describe_maps

    start = time.perf_counter()
    scan = load_scan(path, mask_spec, args.slab, args.overlap, args.maps)
    loading = time.perf_counter() - start
    print(
        f"{args.input}: {scan.kind}, {len(scan.items)} item(s) of k-space "
        f"{tuple(scan.items[0].kspace.shape[1:])}, {scan.measured_fraction:.1%} measured"
    )
    if scan.maps_choices:
        print(describe_maps(scan.maps_choices))
    initial, init = _initial_weights(args, cfg, scan, initial)
    print(f"network: {cfg.model.name}, starts from {init}")
    identity = {
        "input": str(Path(args.input).resolve()),
        "config": config_to_dict(cfg),
        "options": asdict(options),
        "mask": mask_spec,
        "slab": [args.slab, args.overlap],
        "init": init,
    }
    result = adapt(
        scan,
        cfg,
        options,
        initial,
        not args.quiet,
        out=args.out,
        identity=identity,
        resume=args.resume,
    )
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    written = write_outputs(result.volume, stem, args.out, formats, scan.header, scan.kind)
    seconds = {"loading_and_maps": loading, "training": result.train_seconds}
    seconds["total"] = time.perf_counter() - start  # adapt.pt and adapt.json still to write
    written += save_adapted(result, scan, args.out, str(args.input), seconds, init)
    remove_state(args.out)  # the run is complete: adapt.pt holds what it kept
    if result.untrained:
        print(f"no network trained: {result.untrained}")
    else:
        best = next(h for h in result.history if h["step"] == result.best_step)
        why = "stopped early: no better validation" if result.stopped_early else "step limit"
        print(
            f"kept step {result.best_step} of {result.steps} (validation loss "
            f"{best['val_loss']:.4g}; {why}); {result.train_seconds:.0f} s of training"
        )
        print(
            f"peak memory of a training step: {result.memory_bytes / 2**20:.1f} MiB "
            f"(strategy {result.strategy}; {result.memory_method})"
        )
    if result.comparison is not None:
        written_by = {"cs": "CS's", "network": "the network's"}.get(
            result.comparison.kept, "that blend"
        )
        print(f"{result.comparison.describe()}; the image written is {written_by}")
    print(
        f"{seconds['total']:.0f} s in all: {loading:.0f} s reading the scan and estimating coil "
        f"maps, {result.train_seconds:.0f} s training, the rest comparing with CS and writing"
    )
    for target in written:
        print(f"wrote {target}")
    return 0
