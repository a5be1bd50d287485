from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from algos.config import (ConfigError, apply_overrides, from_dict, load_yaml, parse_cli, save_yaml,
                          show_value, to_dict, valid_keys)


@dataclass
class GiGPOCfg:
    step_advantage_w: float = 1.0
    gamma: float = 0.95
    similarity: Literal["exact", "fuzzy"] = "exact"


@dataclass
class AlgoCfg:
    name: Literal["grpo", "gigpo", "ppo"] = "gigpo"
    gigpo: GiGPOCfg = field(default_factory=GiGPOCfg)
    clip: tuple[float, float] = (0.2, 0.28)


@dataclass
class TrainCfg:
    lr: float = 1e-6
    steps: int = 100
    bf16: bool = True
    run_name: str = "debug"
    seed: Optional[int] = None
    envs: list[str] = field(default_factory=lambda: ["sokoban"])


@dataclass
class EvalCfg:
    every: int = 10
    episodes: int | None = 32


@dataclass
class Cfg:
    algo: AlgoCfg = field(default_factory=AlgoCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    env_kwargs: dict[str, int] = field(default_factory=dict)


@dataclass
class Required:
    name: str
    n: int = 1


def test_defaults_and_dict_round_trip():
    cfg = Cfg()
    d = to_dict(cfg)
    assert d["algo"]["clip"] == [0.2, 0.28]  # tuples become lists for YAML
    assert from_dict(Cfg, d) == cfg
    # values as the command line writes them (--help, the README's estimator table)
    assert [show_value(v) for v in ([1, 2], (0.2, 0.28), {"size": 6}, [], None, True)] == \
        ["[1, 2]", "[0.2, 0.28]", "{size: 6}", "[]", "null", "true"]


def test_overrides_from_the_brief():
    cfg = apply_overrides(Cfg(), ["algo.name=grpo", "algo.gigpo.step_advantage_w=0.5",
                                  "train.lr=1e-5", "eval.every=5"])
    assert cfg.algo.name == "grpo"
    assert cfg.algo.gigpo.step_advantage_w == 0.5
    assert cfg.train.lr == 1e-5 and isinstance(cfg.train.lr, float)  # YAML reads "1e-5" as a str
    assert cfg.eval.every == 5


def test_overrides_do_not_mutate_input():
    base = Cfg()
    apply_overrides(base, ["train.steps=7"])
    assert base.train.steps == 100


def test_coercion_of_cli_values():
    cfg = apply_overrides(Cfg(), [
        "train.steps=1000", "train.bf16=false", "train.seed=3", "eval.episodes=null",
        "train.run_name=yes", "train.envs=[sokoban, webshop]", "algo.clip=[0.1, 0.3]",
        "env_kwargs={size: 6}", "algo.gigpo={gamma: 0.9}",
    ])
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)
    with pytest.raises(ConfigError, match=r"train\.steps: expected int, got 1000\.0"):  # OmegaConf keeps floats out of ints
        apply_overrides(Cfg(), ["train.steps=1e3"])
    assert cfg.train.bf16 is False
    assert cfg.train.seed == 3
    assert cfg.eval.episodes is None
    assert cfg.train.run_name == "yes"  # a str field keeps the text, not YAML's True
    assert cfg.train.envs == ["sokoban", "webshop"]
    assert cfg.algo.clip == (0.1, 0.3)
    assert cfg.env_kwargs == {"size": 6}
    # A dict-typed field is replaced, not merged.
    assert apply_overrides(cfg, ["env_kwargs={rooms: 2}"]).env_kwargs == {"rooms": 2}
    # A section given as a mapping updates the section rather than resetting its other fields.
    assert cfg.algo.gigpo == GiGPOCfg(step_advantage_w=1.0, gamma=0.9)


def test_unknown_key_suggests_closest_and_lists_level():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), ["algo.gigpo.step_advantage_wt=0.5"])
    msg = str(e.value)
    assert "'algo.gigpo.step_advantage_wt'" in msg
    assert "did you mean 'algo.gigpo.step_advantage_w'" in msg.lower()
    assert "step_advantage_w, gamma, similarity" in msg
    assert isinstance(e.value, ValueError)


def test_unknown_section_names_full_key():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), ["trian.lr=1e-5"])
    msg = str(e.value)
    assert "'trian.lr'" in msg and "'train.lr'" in msg


def test_unknown_key_in_yaml_data():
    with pytest.raises(ConfigError, match=r"'eval\.evry'.*'eval\.every'"):
        from_dict(Cfg, {"eval": {"evry": 3}})


def test_wrong_type_names_key_type_and_value():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), ["train.steps=many"])
    msg = str(e.value)
    assert "train.steps" in msg and "int" in msg and "'many'" in msg
    with pytest.raises(ConfigError, match="train.lr.*float.*True"):
        from_dict(Cfg, {"train": {"lr": True}})
    with pytest.raises(ConfigError, match="algo.clip"):
        apply_overrides(Cfg(), ["algo.clip=[0.1]"])
    with pytest.raises(ConfigError, match=r"train\.envs\[1\]"):
        from_dict(Cfg, {"train": {"envs": ["a", [1]]}})


def test_literal_rejects_value_and_lists_allowed():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), ["algo.name=sac"])
    msg = str(e.value)
    assert "algo.name" in msg and "'sac'" in msg
    for allowed in ("'grpo'", "'gigpo'", "'ppo'"):
        assert allowed in msg


def test_bad_override_syntax_and_non_section():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(Cfg(), ["train.lr"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(Cfg(), ["train.lr.x=1"])


def test_literal_matches_text_that_yaml_would_turn_into_bool():
    assert apply_overrides(Cfg(), ["algo.gigpo.similarity=fuzzy"]).algo.gigpo.similarity == "fuzzy"

    @dataclass
    class Switch:
        mode: Literal["on", "off"] = "off"

    assert apply_overrides(Switch(), ["mode=on"]).mode == "on"


def test_valid_keys_lists_sections_and_leaves():
    keys = valid_keys(Cfg)
    assert "algo" in keys and "algo.gigpo.step_advantage_w" in keys and "eval.every" in keys


def test_missing_required_field():
    assert from_dict(Required, {"name": "x"}) == Required("x")
    with pytest.raises(ConfigError, match="name"):
        from_dict(Required, {"n": 2})


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(Cfg(), ["algo.name=ppo", "train.seed=7", "algo.clip=[0.1, 0.2]",
                                  "train.run_name=123"])
    path = save_yaml(cfg, tmp_path / "sub" / "cfg.yaml")
    assert load_yaml(Cfg, path) == cfg
    assert "name: ppo" in path.read_text()


def test_yaml_coerces_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3e-4\n  steps: '12'\n  bf16: 'no'\n")
    cfg = load_yaml(Cfg, path)
    assert cfg.train.lr == 3e-4 and cfg.train.steps == 12 and cfg.train.bf16 is False


def test_parse_cli_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("algo:\n  name: grpo\ntrain:\n  lr: 2.0e-5\n  steps: 50\n")
    cfg = parse_cli(Cfg, ["--config", str(path), "train.steps=60", "--eval.every=3"])
    assert cfg.algo.name == "grpo" and cfg.train.lr == 2e-5
    assert cfg.train.steps == 60 and cfg.eval.every == 3
    assert parse_cli(Cfg, [f"--config={path}"]).train.steps == 50
    assert parse_cli(Cfg, []) == Cfg()
    with pytest.raises(ConfigError):
        parse_cli(Cfg, ["--config"])
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_cli(Cfg, ["--verbose"])


# --- declared value ranges (field metadata, checked by check_ranges when a config is built) -------

import dataclasses  # noqa: E402
import types  # noqa: E402
import typing  # noqa: E402

from algos.config import RANGE, Range, check_ranges, field_range, ranged  # noqa: E402


@dataclass
class RangedSection:
    gamma: float = ranged(0.95, ge=0, le=1)
    top_p: float = ranged(1.0, gt=0, le=1)
    weights: Optional[list[float]] = ranged(None)


@dataclass
class Ranged:
    steps: int = ranged(10, ge=1)
    workers: int = ranged(2, ge=0)
    lr: float = ranged(1e-3, gt=0)
    threads: Optional[int] = ranged(None, ge=1)
    free: float = 0.5  # no declared range: not checked
    sec: RangedSection = field(default_factory=RangedSection)


def test_ranged_is_plain_field_metadata():
    f = {f.name: f for f in dataclasses.fields(Ranged)}
    assert f["steps"].default == 10 and f["steps"].metadata[RANGE] == Range(ge=1)
    assert field_range(f["free"]) is None
    assert Ranged().steps == 10 and Ranged(steps=3).steps == 3  # still an ordinary dataclass


@pytest.mark.parametrize("override, message", [
    ("steps=0", "steps=0 is out of range: it must be an integer >= 1"),
    ("workers=-1", "workers=-1 is out of range: it must be an integer >= 0"),
    ("lr=0", "lr=0.0 is out of range: it must be a finite number > 0"),
    ("lr=-1", "lr=-1.0 is out of range: it must be a finite number > 0"),
    ("lr=nan", "lr=nan is out of range: it must be a finite number > 0"),
    ("lr=inf", "lr=inf is out of range: it must be a finite number > 0"),
    ("threads=0", "threads=0 is out of range: it must be an integer >= 1 (or null)"),
    ("sec.gamma=2", "sec.gamma=2.0 is out of range: it must be a finite number in [0, 1]"),
    ("sec.top_p=0", "sec.top_p=0.0 is out of range: it must be a finite number in (0, 1]"),
    ("sec.weights=[1, .inf]", "sec.weights[1]=inf is out of range: it must be a finite number"),
])
def test_values_out_of_range_name_key_value_and_range(override, message):
    with pytest.raises(ConfigError) as e:
        apply_overrides(Ranged(), [override])
    assert str(e.value) == message


def test_values_in_range_and_null_pass():
    cfg = apply_overrides(Ranged(), ["steps=1", "workers=0", "lr=1e-9", "threads=null", "sec.gamma=0",
                                     "sec.gamma=1", "sec.top_p=1", "sec.weights=[-2, 3]", "free=-1e9"])
    assert (cfg.steps, cfg.workers, cfg.threads, cfg.sec.gamma, cfg.sec.weights, cfg.free) == \
        (1, 0, None, 1.0, [-2.0, 3.0], -1e9)


def test_ranges_are_checked_on_every_build_path(tmp_path):
    with pytest.raises(ConfigError, match=r"^steps=0 is out of range"):
        from_dict(Ranged, {"steps": 0})
    (tmp_path / "c.yaml").write_text("sec:\n  gamma: -0.5\n")
    with pytest.raises(ConfigError, match=r"^sec\.gamma=-0\.5 is out of range"):
        load_yaml(Ranged, tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"^lr=nan"):
        parse_cli(Ranged, ["lr=.nan"])
    bad = Ranged()
    bad.sec.top_p = 1.5  # built in code: check_ranges is public for that
    with pytest.raises(ConfigError, match=r"^sec\.top_p=1\.5"):
        check_ranges(bad)


def _numeric(tp) -> bool:
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
    args = [typing.get_args(a)[0] if typing.get_origin(a) is list else a for a in args]
    return any(a in (int, float) for a in args)


def test_every_numeric_train_config_field_declares_a_range_and_defaults_are_in_it():
    from algos.train_config import TrainConfig

    missing = []

    def walk(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif _numeric(tp) and field_range(f) is None:
                missing.append(prefix + f.name)

    walk(TrainConfig)
    assert missing == []
    check_ranges(TrainConfig())
    assert from_dict(TrainConfig, {}) == TrainConfig()


@pytest.mark.parametrize("override", [
    "rl.group_size=0", "rl.tasks_per_iter=0", "save_every=0", "keep_checkpoints=0", "rl.minibatch_size=0",
    "sft.batch_size=0", "sft.epochs=0", "sft.episodes=-1", "rl.lr=-1", "rl.lr=nan", "rl.lr=inf", "sft.lr=-1",
    "rl.iterations=-1", "rl.temperature=-1", "rl.ppo_epochs=0", "rl.max_new_tokens=0", "threads=0",
    "env.history_length=-1", "loss.clip_low=-1", "algo.gigpo.gamma=2", "env.workers=-1",
    "rl.max_tokens_per_micro_batch=0", "rl.top_p=0", "loss.clip_ratio_c=1", "algo.gae.lam=1.5",
    "vllm.gpu_memory_utilization=0", "sft.noise=1.5", "eval.every=0",
])
def test_train_config_refuses_values_out_of_range(override):
    from algos.train_config import TrainConfig

    key, _, value = override.partition("=")
    with pytest.raises(ConfigError) as e:
        apply_overrides(TrainConfig(), [override])
    msg = str(e.value)
    assert msg.startswith(f"{key}=") and "out of range: it must be" in msg and "\n" not in msg
    shown = msg.split(" ")[0].partition("=")[2]
    assert shown == "nan" if value == "nan" else float(shown) == float(value)


def test_null_clears_an_optional_string_and_is_refused_for_a_plain_one():
    from algos.train_config import TrainConfig

    cfg = apply_overrides(TrainConfig(), ["eval.split=test", "eval.split=null"])
    assert cfg.eval.split is None  # not the four-letter split name "null"
    with pytest.raises(ConfigError) as e:
        apply_overrides(TrainConfig(), ["model.gguf_file=null"])
    assert "model.gguf_file is a string and cannot be null" in str(e.value) and "(model.gguf_file=)" in str(e.value)
    assert apply_overrides(TrainConfig(), ["model.gguf_file="]).model.gguf_file == ""


def test_dotted_key_sets_one_entry_of_a_dict_field():
    cfg = apply_overrides(Cfg(), ["env_kwargs={size: 6, boxes: 1}", "env_kwargs.size=7", "env_kwargs.steps=20"])
    assert cfg.env_kwargs == {"size": 7, "boxes": 1, "steps": 20}
    with pytest.raises(ConfigError, match="env_kwargs"):  # the entry is still checked against dict[str, int]
        apply_overrides(Cfg(), ["env_kwargs.size=big"])
    with pytest.raises(ConfigError, match=r"one entry of env_kwargs.*env_kwargs.size=\{w: \.\.\.\}"):
        apply_overrides(Cfg(), ["env_kwargs.size.w=1"])


def test_dotted_key_into_a_null_dict_asks_for_the_whole_mapping():
    from algos.train_config import TrainConfig

    with pytest.raises(ConfigError, match=r"env.kwargs is null.*env.kwargs=\{size: \.\.\.\}"):
        apply_overrides(TrainConfig(), ["env.kwargs.size=7"])  # null means Sokoban's defaults here
    cfg = apply_overrides(TrainConfig(), ["env.id=numberline", "env.kwargs={obs_mode: text}", "env.kwargs.max_steps=4"])
    assert cfg.env.options() == {"obs_mode": "text", "max_steps": 4}


def test_mapping_without_space_after_colon_is_explained():
    with pytest.raises(ConfigError, match=r"space after the colon \(\{size: 6\}\)"):
        apply_overrides(Cfg(), ["env_kwargs={size:6}"])
