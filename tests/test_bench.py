"""The benchmark harness on the CPU at toy sizes: FLOP counts, records, floors, outputs, errors."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from torch import nn

from gleam_mri.bench import fastmri_baseline as fmb
from gleam_mri.bench.command import add_parser, main
from gleam_mri.bench.floors import cnn_roots
from gleam_mri.bench.flops import ConvFlopCounter, conv_flops
from gleam_mri.bench.harness import build_net, run_benchmark
from gleam_mri.bench.options import BenchOptions, apply_channels_last
from gleam_mri.bench.output import markdown_report, target_checks, write_outputs
from gleam_mri.bench.shapes import PRESETS, get_preset, make_batch, model_config
from gleam_mri.models.unrolled import Problem

STRATEGIES = ("e2e", "checkpoint", "invertible", "greedy")
TINY = {"device": "cpu", "repeats": 1, "warmup": 0, "copy_bytes": 2**20}


@pytest.fixture(scope="module")
def tiny_2d() -> dict:
    """One whole benchmark of PGD-ResNet at depths 2 and 4 (shared by several tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_benchmark("tiny-2d", BenchOptions(depths=(2, 4), **TINY))
    finally:
        torch.set_num_threads(threads)


def by_key(result: dict) -> dict[tuple[str, int], dict]:
    return {(r["strategy"], r["depth"]): r for r in result["records"]}


# ----------------------------------------------------------------------------- FLOPs


def test_conv_flops_match_the_formula() -> None:
    conv = nn.Conv2d(3, 5, (3, 5), padding=(1, 2))
    strided = nn.Conv3d(4, 6, 3, stride=2, padding=1, groups=2)
    up = nn.ConvTranspose2d(8, 4, 2, stride=2)
    with ConvFlopCounter(conv, strided, up) as counter:
        conv(torch.randn(2, 3, 7, 9))
        strided(torch.randn(1, 4, 6, 8, 10))  # output 3 x 4 x 5
        up(torch.randn(1, 8, 5, 6))
    expected = [
        2 * 2 * 5 * (7 * 9) * 3 * (3 * 5),  # 2 N C_out prod(out) C_in prod(k)
        2 * 1 * 6 * (3 * 4 * 5) * (4 // 2) * 27,
        2 * 1 * 8 * (5 * 6) * 4 * 4,  # transposed: 2 N C_in prod(in) C_out prod(k)
    ]
    assert sorted(call.flops for call in counter.calls) == sorted(expected)
    assert counter.forward_flops == sum(expected)
    assert counter.train_flops == 3 * sum(expected)
    assert conv_flops((2, 3, 7, 9), (2, 5, 7, 9), conv) == expected[0]


def test_training_step_flops_equal_torch_flop_counter(one_thread) -> None:
    """forward + 2x backward equals what torch.utils.flop_counter counts for a real step."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 2, 2, stride=2),
    )
    x = torch.randn(2, 2, 12, 10, requires_grad=True)
    with ConvFlopCounter(net) as counter, FlopCounterMode(display=False) as reference:
        net(x).square().sum().backward()
    assert counter.n_calls == 3
    assert counter.train_flops == reference.get_total_flops()


# ----------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("tiny")])
def test_make_batch_follows_the_conventions(name: str) -> None:
    shape = get_preset(name)
    batch = make_batch(shape, batch=2)
    assert batch.kspace.shape == (2, shape.coils, *shape.image)
    assert batch.kspace.dtype == torch.complex64
    assert batch.mask.shape[-2] == 1  # never varies along the readout
    assert batch.mask.shape[:2] == (2, 1)
    assert 0 < float(batch.mask.mean()) < 1
    centre = batch.mask[..., shape.image[-1] // 2]  # the centre ky line, (B, 1, Z or T, 1)
    if shape.kind == "3d":
        centre = centre[:, :, shape.image[0] // 2]  # and kz = 0
    assert bool((centre == 1).all())  # the k-space centre is sampled (in every frame)
    assert torch.count_nonzero(batch.kspace * (1 - batch.mask)) == 0
    expected = shape.target or shape.image[-2:]
    assert batch.target.shape[-2:] == tuple(expected)


def test_full_size_presets_have_the_issue_shapes() -> None:
    assert (get_preset("2d-knee").coils, get_preset("2d-knee").image) == (15, (320, 320))
    assert get_preset("varnet-knee").image == (640, 368)
    assert (get_preset("3d-slab").coils, sorted(get_preset("3d-slab").image)) == (8, [80, 256, 256])
    assert (get_preset("cine").coils, get_preset("cine").image) == (10, (20, 192, 192))


def test_channels_last_keeps_the_result(one_thread) -> None:
    shape = get_preset("tiny-3d")
    batch = make_batch(shape)
    net = build_net(model_config(shape), shape, 2, False, torch.device("cpu"))
    with torch.no_grad():
        before = net(Problem.from_batch(batch))
        assert apply_channels_last(net) == len(
            [m for m in net.modules() if isinstance(m, nn.Conv3d)]
        )
        after = net(Problem.from_batch(batch))
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


def test_cnn_roots_are_the_regularisers_and_the_sensitivity_unet() -> None:
    cpu, shape = torch.device("cpu"), get_preset("tiny-2d")
    pgd = build_net(model_config(shape), shape, 3, False, cpu)
    assert [type(m).__name__ for m in cnn_roots(pgd)] == ["ResNet"] * 3
    shape = get_preset("tiny-varnet")
    varnet = build_net(model_config(shape), shape, 3, False, cpu)
    assert [type(m).__name__ for m in cnn_roots(varnet)] == ["UNet"] * 4


# ----------------------------------------------------------------------------- the harness


def test_records_for_every_strategy_and_depth(tiny_2d: dict) -> None:
    records = by_key(tiny_2d)
    assert set(records) == {(s, d) for s in STRATEGIES for d in (2, 4)}
    for r in records.values():
        assert r["status"] == "ok"
        assert r["step_s"] > 0 and r["memory_bytes"] > 0 and r["saved_bytes"] > 0
        assert r["conv_tflops"] > 0 and r["floor_ratio"] > 0
        assert r["useful_conv_flops"] == 3 * r["forward_conv_flops"]
        assert r["memory_kind"] == "saved_activations" and r["peak_bytes"] is None
    # one forward's conv FLOPs grow linearly with depth; the invertible net runs each CNN twice
    e2e2, e2e4 = records[("e2e", 2)], records[("e2e", 4)]
    assert e2e4["forward_conv_flops"] == 2 * e2e2["forward_conv_flops"]
    assert records[("invertible", 4)]["forward_conv_flops"] == 2 * e2e4["forward_conv_flops"]
    # recomputation is counted apart from the useful FLOPs
    recompute = {s: records[(s, 4)]["recompute_factor"] for s in STRATEGIES}
    assert recompute == {"e2e": 1.0, "checkpoint": 2.0, "invertible": 3.0, "greedy": 1.0}
    assert tiny_2d["options"]["fused_adam"] is False  # reported, resolved for the CPU


def test_greedy_memory_is_flat_and_e2e_grows(tiny_2d: dict) -> None:
    records = by_key(tiny_2d)
    assert records[("greedy", 4)]["saved_bytes"] == records[("greedy", 2)]["saved_bytes"]
    assert records[("invertible", 4)]["saved_bytes"] == records[("invertible", 2)]["saved_bytes"]
    assert records[("e2e", 4)]["saved_bytes"] > 1.6 * records[("e2e", 2)]["saved_bytes"]
    assert records[("greedy", 4)]["saved_bytes"] < records[("e2e", 4)]["saved_bytes"]


def test_floors_are_measured(tiny_2d: dict) -> None:
    floors = tiny_2d["floors"]
    assert floors["copy"]["bytes"] == 2**20 and floors["copy"]["gb_per_s"] > 0
    cnn = {f["depth"]: f for f in floors["cnn"]}
    e2e = by_key(tiny_2d)
    for depth in (2, 4):
        assert cnn[depth]["status"] == "ok" and cnn[depth]["step_s"] > 0
        assert cnn[depth]["cnn_calls"] == depth
        # all of PGD's convolutions are in its CNNs: same FLOPs, and no physics in the floor
        assert cnn[depth]["forward_conv_flops"] == e2e[("e2e", depth)]["forward_conv_flops"]
        assert cnn[depth]["conv_only_s"] > 0
        ratio = e2e[("e2e", depth)]["step_s"] / cnn[depth]["step_s"]
        assert e2e[("e2e", depth)]["floor_ratio"] == pytest.approx(ratio)
    conv = floors["conv"]  # conv_in, the inner convs, conv_out of the ResNet
    assert len(conv) == 3
    assert sum(row["count_per_forward"] for row in conv) == 4 * 2  # 4 convs x depth 2
    assert all(row["train_tflops"] > 0 and row["dtype"] == "float32" for row in conv)


@pytest.mark.parametrize("name", ["tiny-3d", "tiny-cine"])
def test_3d_and_cine_presets_run(name: str, one_thread) -> None:
    options = BenchOptions(strategies=("e2e", "greedy"), depths=(1, 2), floors=False, **TINY)
    result = run_benchmark(name, options)
    records = by_key(result)
    assert all(r["status"] == "ok" and r["floor_ratio"] is None for r in records.values())
    flops = {d: records[("e2e", d)]["forward_conv_flops"] for d in (1, 2)}
    assert flops[2] == 2 * flops[1] > 0
    assert records[("greedy", 2)]["saved_bytes"] == records[("greedy", 1)]["saved_bytes"]


# ----------------------------------------------------------------------------- fastMRI


def test_fastmri_checkpoint_wrapper_keeps_loss_and_gradients(one_thread) -> None:
    pytest.importorskip("fastmri")
    shape = get_preset("tiny-varnet")
    batch = make_batch(shape)
    kspace, mask = fmb.fastmri_inputs(batch)
    grads = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = fmb.build_fastmri_varnet(model_config(shape), 2, checkpointed)
        model(kspace, mask).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


def test_fastmri_baseline_runs_at_a_tiny_shape(one_thread) -> None:
    pytest.importorskip("fastmri")
    assert fmb.fastmri_unavailable() is None
    options = BenchOptions(strategies=("greedy",), depths=(2,), fastmri=True, **TINY)
    result = run_benchmark("tiny-varnet", options)
    records = by_key(result)
    assert set(records) == {("greedy", 2), ("fastmri-e2e", 2), ("fastmri-checkpoint", 2)}
    e2e, ckpt = records[("fastmri-e2e", 2)], records[("fastmri-checkpoint", 2)]
    assert e2e["source"] == "fastmri" and e2e["status"] == ckpt["status"] == "ok"
    assert e2e["forward_conv_flops"] == ckpt["forward_conv_flops"] > 0
    assert e2e["recompute_factor"] == 1.0 and ckpt["recompute_factor"] > 1.0
    assert ckpt["saved_bytes"] < e2e["saved_bytes"]
    assert e2e["floor_ratio"] > 0
    assert {f["cnn_calls"] for f in result["floors"]["cnn"]} == {3}  # sensitivity U-Net + 2


def test_missing_fastmri_is_skipped_with_a_message(monkeypatch, one_thread) -> None:
    reason = "fastMRI baseline skipped: cannot import fastmri.models.VarNet (test)"
    monkeypatch.setattr(fmb, "fastmri_unavailable", lambda: reason)
    options = BenchOptions(strategies=("e2e",), depths=(1,), fastmri=True, floors=False, **TINY)
    lines: list[str] = []
    result = run_benchmark("tiny-varnet", options, log=lines.append)
    assert [r["source"] for r in result["records"]] == ["gleam"]
    assert result["skipped"] == [reason] and reason in lines
    assert f"Skipped: {reason}" in markdown_report(result)


def test_fastmri_input_conversion() -> None:
    batch = make_batch(get_preset("tiny-varnet"), batch=2)
    kspace, mask = fmb.fastmri_inputs(batch)
    assert kspace.shape == (*batch.kspace.shape, 2) and kspace.dtype == torch.float32
    assert mask.shape == (2, 1, 1, batch.kspace.shape[-1], 1) and mask.dtype == torch.bool
    with pytest.raises(ValueError, match="2D only"):
        fmb.fastmri_inputs(make_batch(get_preset("tiny-3d")))


# ----------------------------------------------------------------------------- outputs


def test_outputs_are_written(tiny_2d: dict, tmp_path) -> None:
    paths = write_outputs(tiny_2d, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["schema"] == "gleam-bench/1"
    assert len(data["records"]) == len(tiny_2d["records"]) == 8
    assert data["options"]["depths"] == [2, 4] and data["options"]["amp"] is False
    text = paths["markdown"].read_text()
    assert text == markdown_report(tiny_2d)
    assert sum(line.startswith("| gleam |") for line in text.splitlines()) == 8
    assert "CNN-only" in text and "Copy bandwidth" in text and "CPU run" in text
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checks = {c["check"]: c for c in target_checks(tiny_2d)}
    assert set(checks) == {f"{s} step / CNN floor (worst depth)" for s in STRATEGIES}
    assert all(math.isfinite(c["value"]) for c in checks.values())


def test_command_line(tmp_path, capsys, one_thread) -> None:
    parser = argparse.ArgumentParser(prog="gleam")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--preset", "tiny-2d", "--strategies", "e2e,greedy"])
    assert args.func.__name__ == "run" and args.strategies == ["e2e,greedy"]
    assert args.fused_adam is None and args.amp is False
    out = tmp_path / "cli"
    argv = [
        "--preset",
        "tiny-cine",
        "--strategies",
        "e2e,greedy",
        "--depths",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--no-floors",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    data = json.loads((out / "bench.json").read_text())
    assert [r["strategy"] for r in data["records"]] == ["e2e", "greedy"]
    assert "written:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- errors


def test_bad_names_give_clear_errors(capsys, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown benchmark preset 'knee'.*2d-knee"):
        get_preset("knee")
    with pytest.raises(ValueError, match=r"unknown strategies \['bogus'\].*greedy"):
        BenchOptions(strategies=("e2e", "bogus")).validate()
    with pytest.raises(ValueError, match="depths must be integers >= 1"):
        BenchOptions(depths=(4, 0)).validate()
    with pytest.raises(ValueError, match=r"strategy\.modules: 3 modules cannot be cut"):
        BenchOptions(depths=(2, 4), strategy_options={"modules": 3}).validate()
    with pytest.raises(ValueError, match="fastMRI baseline compares E2E-VarNets"):
        run_benchmark("tiny-2d", BenchOptions(fastmri=True, **TINY))
    assert main(["--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown benchmark preset 'nope'" in capsys.readouterr().err
    config = tmp_path / "model.yaml"
    config.write_text("data: {kind: 2d}\nmodel: {name: pgd, features: 4, blocks: 1}\n")
    assert main(["--preset", "tiny-3d", "--config", str(config), "--out", str(tmp_path)]) == 2
    assert "data.kind is '2d' but the preset is '3d'" in capsys.readouterr().err


@pytest.mark.cuda
def test_cuda_run_uses_events_peak_memory_and_bf16_channels_last() -> None:
    options = BenchOptions(
        strategies=("e2e", "greedy"),
        depths=(1, 2),
        amp=True,
        channels_last=True,
        device="cuda",
        repeats=2,
        warmup=1,
        copy_bytes=2**24,
    )
    before = torch.backends.cudnn.benchmark
    result = run_benchmark("tiny-2d", options)
    assert torch.backends.cudnn.benchmark == before  # the global setting is restored
    assert result["options"]["fused_adam"] is True and result["options"]["cudnn_benchmark"]
    for r in result["records"]:
        assert r["status"] == "ok" and r["memory_kind"] == "cuda_max_allocated"
        assert r["peak_bytes"] >= r["peak_step_bytes"] > 0
        assert r["memory_bytes"] == r["peak_bytes"]
    conv = result["floors"]["conv"]
    assert conv and all(row["dtype"] == "bfloat16" and row["channels_last"] for row in conv)
