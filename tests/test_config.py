"""Run configuration: YAML loading, dotted overrides, validation errors and the YAML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gleam_mri.config import (
    Config,
    ConfigError,
    ConfigFileNotFoundError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    StrategyConfig,
    TrainConfig,
    config_to_dict,
    save_config,
)
from gleam_mri.training.run_config import config_from_dict, load_config
from gleam_mri.training.strategies import STRATEGIES, strategy_settings


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_documented_values() -> None:
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.data == DataConfig()
    assert cfg.data.mask == {"name": "random", "center_fractions": [0.08], "accelerations": [4]}
    assert (cfg.data.kind, cfg.data.maps, cfg.data.batch_size, cfg.data.num_workers) == (
        "2d",
        "file",
        1,
        0,
    )
    assert (cfg.model.name, cfg.model.unrolls, cfg.model.features, cfg.model.dims) == (
        "pgd",
        8,
        64,
        "auto",
    )
    assert cfg.strategy == StrategyConfig(name="e2e")
    assert strategy_settings(cfg, "greedy").modules is None  # one module per iteration
    assert strategy_settings(cfg, "checkpoint").checkpoint_every == 1
    assert cfg.optim == OptimConfig(name="Adam", lr=1e-3, scheduler=None, amp=False)
    assert (cfg.train.seed, cfg.train.loss, cfg.train.device) == (0, "l1", "auto")
    # mutable defaults are not shared between instances
    Config().data.mask["accelerations"].append(8)
    assert Config().data.mask["accelerations"] == [4]


def test_yaml_file_sets_values_and_missing_sections_take_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: knee
data:
  root: /data/knee
  kind: 3d
  mask: {name: poisson, acceleration: 6, calib: [12, 12]}
model:
  name: modl
  unrolls: 4
  dc: {lam_init: 0.05, cg_iters: 10}
strategy:            # an empty section: defaults
optim:
  lr: 1e-4           # YAML 1.1 reads this as a string; float fields accept it
  kwargs: {weight_decay: 0.0}
  grad_clip: 1       # an int is widened to float
""",
    )
    cfg = load_config(path)
    assert cfg.name == "knee"
    assert cfg.data.root == "/data/knee" and cfg.data.kind == "3d"
    assert cfg.data.mask == {"name": "poisson", "acceleration": 6, "calib": [12, 12]}
    assert cfg.data.batch_size == 1  # key missing from the section
    assert cfg.model == ModelConfig(name="modl", unrolls=4, dc={"lam_init": 0.05, "cg_iters": 10})
    assert cfg.strategy == StrategyConfig()
    assert cfg.train == TrainConfig()
    assert cfg.optim.lr == 1e-4 and type(cfg.optim.lr) is float
    assert cfg.optim.grad_clip == 1.0 and type(cfg.optim.grad_clip) is float
    assert cfg.optim.kwargs == {"weight_decay": 0.0}


def test_overrides_are_parsed_as_yaml_and_applied_after_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "model: {unrolls: 8, dc: {step_init: 0.5}}\nstrategy: {name: greedy, modules: 4}\n",
    )
    cfg = load_config(
        path,
        [
            "model.unrolls=16",
            "optim.lr=3e-4",
            "strategy.modules=null",
            "model.dc.cg_iters=10",  # into a dict field: the file's entry is kept
            "data.mask={name: equispaced, center_fractions: [0.04], accelerations: [8]}",
            "optim.scheduler=CosineAnnealingLR",
            "optim.scheduler_kwargs.T_max=100",
            "name=a=b",  # only the first '=' splits
            "train.steps=5",
            "train.steps=7",  # the last one wins
            "model.shared_weights=true",
        ],
    )
    assert cfg.model.unrolls == 16
    assert cfg.optim.lr == pytest.approx(3e-4) and type(cfg.optim.lr) is float
    assert cfg.strategy.name == "greedy" and strategy_settings(cfg).modules is None
    assert cfg.model.dc == {"step_init": 0.5, "cg_iters": 10}
    assert cfg.data.mask == {"name": "equispaced", "center_fractions": [0.04], "accelerations": [8]}
    assert cfg.optim.scheduler == "CosineAnnealingLR"
    assert cfg.optim.scheduler_kwargs == {"T_max": 100}
    assert cfg.name == "a=b"
    assert cfg.train.steps == 7
    assert cfg.model.shared_weights is True


def test_only_the_chosen_strategy_checks_its_options_against_the_model() -> None:
    """Greedy refuses more modules than iterations; e2e ignores the greedy-only option."""
    with pytest.raises(ConfigError) as info:
        load_config(None, ["strategy.name=greedy", "strategy.modules=9"])
    assert str(info.value).startswith("override 'strategy.modules=9': strategy.modules: ")
    assert "model.unrolls=8" in str(info.value)
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml"
    cfg = load_config(demo, ["strategy.name=e2e", "model.unrolls=2"])  # demo: modules 4
    assert strategy_settings(cfg) == STRATEGIES["e2e"].Options()
    assert cfg.strategy.options["modules"] == 4  # kept for a switch back, unused by e2e
    with pytest.raises(ConfigError, match=r"strategy\.modules: 4 modules cannot be cut"):
        load_config(demo, ["strategy.name=greedy", "model.unrolls=2"])
    with pytest.raises(ConfigError, match="batch_size=2 must be a multiple of the 3 replicas"):
        load_config(demo, ["strategy.name=pipeline", "strategy.replicas=3"])


def test_invertible_inversion_needs_the_matching_network() -> None:
    ok = load_config(None, ["strategy.name=invertible", "strategy.inversion=fixed-point"])
    assert strategy_settings(ok).fixed_point_iters == 5 and not ok.model.invertible
    with pytest.raises(ConfigError, match=r"model\.invertible=true"):
        load_config(None, ["strategy.name=invertible"])  # coupling needs the coupled network
    with pytest.raises(ConfigError, match=r"model\.invertible=false"):
        load_config(None, ["strategy.name=invertible", "strategy.inversion=fixed-point",
                           "model.invertible=true"])  # fmt: skip


def test_strategy_options_are_typed_by_the_strategy_and_default_to_its_values() -> None:
    cfg = load_config(None, ["strategy.name=checkpoint", "strategy.checkpoint_every=2"])
    assert strategy_settings(cfg).checkpoint_every == 2
    assert config_to_dict(cfg)["strategy"] == {"name": "checkpoint", "checkpoint_every": 2}
    cfg = load_config(None, ["strategy.name=pipeline"])
    assert config_to_dict(cfg)["strategy"] == {
        "name": "pipeline",
        "modules": None,
        "module_loss": None,
        "staleness": 1,
        "replicas": 1,
        "timeout": 60.0,
    }
    assert strategy_settings(cfg).strategy_kwargs(cfg) == {
        "modules": None,
        "staleness": 1,
        "replicas": 1,
        "timeout": 60.0,
    }


def test_dotted_override_into_a_default_dict_keeps_the_other_entries() -> None:
    cfg = load_config(None, ["data.mask.accelerations=[8]", "data.mask.seed=3"])
    assert cfg.data.mask == {
        "name": "random",
        "center_fractions": [0.08],
        "accelerations": [8],
        "seed": 3,
    }


BAD_OVERRIDES = [
    ("model.unrols=3", ["model.unrols", "unknown key", "did you mean 'unrolls'"]),
    ("modle.unrolls=3", ["modle", "unknown key", "did you mean 'model'"]),
    ("model.unrolls=abc", ["model.unrolls", "expected an integer", "'abc'"]),
    ("model.unrolls=true", ["model.unrolls", "expected an integer", "bool True"]),
    ("model.unrolls=2.5", ["model.unrolls", "expected an integer", "2.5"]),
    ("model.invertible=1", ["model.invertible", "expected a boolean", "int 1"]),
    ("optim.lr=fast", ["optim.lr", "expected a number", "'fast'"]),
    ("data.root=12", ["data.root", "expected a string", "int 12"]),
    ("train.loss=l2", ["train.loss", "one of 'l1', 'mse', 'ssim', 'l1+ssim'", "'l2'"]),
    ("model.regularizer=unt", ["model.regularizer", "did you mean 'unet'"]),
    ("strategy.module_loss=ssm", ["strategy.module_loss", "or null", "did you mean 'ssim'"]),
    ("strategy.modules=two", ["strategy.modules", "an integer or null", "'two'"]),
    ("data.mask=3", ["data.mask", "expected a mapping", "int 3"]),
    ("model.dc={1: 2}", ["model.dc", "string keys"]),
    ("model.unrolls=0", ["model.unrolls", "must be >= 1", "0"]),
    ("data.max_val_items=0", ["data.max_val_items", "must be >= 1"]),
    ("optim.lr=0", ["optim.lr", "must be > 0"]),
    ("train.val_every=-1", ["train.val_every", "must be >= 0"]),
    ("optim.name=adam", ["optim.name", "unknown optimizer 'adam'", "did you mean 'Adam'"]),
    ("optim.scheduler=StepLr", ["optim.scheduler", "did you mean 'StepLR'"]),
    ("data.mask={name: poisson}", ["data.mask", "invalid mask spec", "acceleration"]),
    ("data.mask.name=spiral", ["data.mask", "unknown mask name 'spiral'"]),
    ("strategy.name=greedi", ["strategy.name", "unknown strategy", "did you mean 'greedy'"]),
    ("strategy.modles=3", ["strategy.modles", "unknown key", "did you mean 'modules'"]),
    ("strategy.timeout=0", ["strategy.timeout", "must be > 0"]),
    ("model.unrolls.x=1", ["model.unrolls", "not a mapping", "model.unrolls.x"]),
]


@pytest.mark.parametrize(("override", "expected"), BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_override_names_the_override_key_value_and_expectation(
    override: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert message.startswith(f"override {override!r}: "), message
    for part in expected:
        assert part in message, (part, message)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.unrolls"], "has no '='"),
        (["model..unrolls=3"], "bad key"),
        (["=3"], "bad key"),
        (["model.unrolls=[1"], "not valid YAML"),
        ([3], "must be a string"),
        ("model.unrolls=3", "sequence of strings"),
    ],
)
def test_malformed_overrides_are_rejected(overrides: list, expected: str) -> None:
    with pytest.raises(ConfigError, match="override") as info:
        load_config(None, overrides)
    assert expected in str(info.value)


def test_missing_file_is_a_file_not_found_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigFileNotFoundError) as info:
        load_config(path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ConfigError)
    assert str(path) in str(info.value) and "does not exist" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", ["top level must be a mapping", "list"]),
        ("42\n", ["top level must be a mapping", "int 42"]),
        ("model: {unrolls: [\n", ["invalid YAML"]),
        ("modle: {unrolls: 3}\n", ["modle", "did you mean 'model'"]),
        ("model: 3\n", ["model", "expected a mapping of ModelConfig keys", "int 3"]),
        ("model: {unrolls: many}\n", ["model.unrolls", "expected an integer", "'many'"]),
        ("data: {kind: 4d}\n", ["data.kind", "one of '2d', '3d', 'cine'", "'4d'"]),
    ],
)
def test_bad_file_errors_name_the_file_and_the_key(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, (part, message)


def test_directory_instead_of_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a file"):
        load_config(tmp_path)
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "# only a comment\n")) == Config()


def test_error_is_attributed_to_the_file_when_the_override_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {unrolls: many}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["optim.lr=1e-4"])
    assert str(info.value).startswith(f"{path}: model.unrolls: ")
    # ... and to the override when the override fixes the file but breaks something else
    assert load_config(path, ["model.unrolls=3"]).model.unrolls == 3


def test_round_trip_through_yaml_and_dict(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "name=roundtrip",
            "data.kind=cine",
            "data.mask={name: cine, acceleration: 8, center_lines: 8}",
            "data.max_val_items=3",
            "model.name=varnet",
            "model.dims=2d+t",
            "model.dc={step_init: 0.1, lam_init: 1.0e-10}",
            "strategy.name=greedy",
            "strategy.modules=4",
            "strategy.mode=sequential",
            "strategy.steps_per_module=50",
            "strategy.module_loss=l1+ssim",
            "optim.name=AdamW",
            "optim.lr=3e-4",
            "optim.kwargs={weight_decay: 0.01, betas: [0.9, 0.99]}",
            "optim.scheduler=StepLR",
            "optim.scheduler_kwargs={step_size: 10}",
            "optim.grad_clip=0.5",
            "optim.amp=true",
            "train.device=cpu",
            "train.tensorboard=false",
        ],
    )
    assert cfg != Config()
    path = save_config(cfg, tmp_path / "sub" / "saved.yaml")
    assert path.is_file()
    assert load_config(path) == cfg
    plain = config_to_dict(cfg)
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain  # plain types only
    assert plain["model"]["dc"] == {"step_init": 0.1, "lam_init": 1e-10}
    assert config_from_dict(plain) == cfg
    assert config_from_dict(plain, ["model.unrolls=6"]).model.unrolls == 6
    assert plain == config_to_dict(cfg)  # config_from_dict did not modify its input
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_dict([1, 2])  # type: ignore[arg-type]
