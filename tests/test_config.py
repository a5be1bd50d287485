from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from algos.config import (ConfigError, apply_overrides, from_dict, load_yaml, parse_cli, save_yaml,
                          to_dict, valid_keys)


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
        "train.steps=1e3", "train.bf16=false", "train.seed=3", "eval.episodes=null",
        "train.run_name=yes", "train.envs=[sokoban, webshop]", "algo.clip=[0.1, 0.3]",
        "env_kwargs={size: 6}", "algo.gigpo={gamma: 0.9}",
    ])
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)
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
