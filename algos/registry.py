"""The advantage-estimator registry: the one place that knows what each estimator is and needs.

An estimator is a function `fn(table: StepTable, opt: Options)` returning one advantage per row
(row order), or a dict holding "advantage" and other per-row columns the loss or the critic reads
("clip": A²TGPO's clip ranges, "return": GAE's critic targets), where `Options` is a dataclass
whose fields are its settings, each with a default and a help string. Register both, with what the trainer must do for it:

    @register_estimator("gigpo", options=GiGPOOptions, diagnostics=gigpo_diagnostics)
    def gigpo(table, opt): ...

The config section `algo.<name>`, `groupwise train --help`, the README's estimator table and the
defaults of `compute_advantages` all come from `Options`, so no default is written twice. The
trainer asks `estimator(name)` what to do (collect one more rollout per task, run the ground-truth
probe, train a critic, ...) and never compares estimator names.

    compute_advantages("gigpo", table, gamma=0.95, invalid_penalty=0.1)

checks the name and the options (an unknown option is a TypeError naming it, a value of the wrong
type or outside its range a ValueError) and returns a float64 array.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from algos.config import ConfigError, from_dict, ranged, show_value
from algos.steptable import StepTable, combine_codes

Estimator = Callable[[StepTable, Any], "np.ndarray | dict[str, np.ndarray]"]
#: fn(table, *, <any subset of the estimator's options>) -> {name: float}
Diagnostics = Callable[..., dict[str, float]]
#: The named per-row parts of the advantage, for the viewer and saved rollouts: fn(table, opt) ->
#: {name: column}; the parts add up to what the estimator returns ("episode" + "step" for GiGPO).
Terms = Callable[[StepTable, Any], dict[str, np.ndarray]]
#: The step groups the estimator compared rows within: fn(table, opt) -> one int code per row.
StepGroups = Callable[[StepTable, Any], np.ndarray]


def option(default: Any, help: str, **bounds: float) -> Any:
    """An estimator option: a dataclass field with its help string (and, for numbers, its range:
    ge=, gt=, le=, lt=; a number is at least finite). The help is what `groupwise train --help`
    prints."""
    if bounds or (isinstance(default, (int, float)) and not isinstance(default, bool)):
        return ranged(default, metadata={"help": help}, **bounds)
    return field(default=default, metadata={"help": help})


@dataclass
class CriticOptions:
    """Options of an estimator that learns a value function (`critic=True`): the trainer reads them."""

    critic_lr: float = option(1e-3, "learning rate of the critic (a value head on its own copy of the model)", gt=0)
    value_clip: float = option(0.2, "PPO value clipping around the old values; 0 disables it", ge=0)
    critic_warmup: int = option(0, "iterations that train only the critic before the policy moves", ge=0)


@dataclass(frozen=True)
class EstimatorSpec:
    """What the trainer needs to know about a registered estimator."""

    name: str
    fn: Estimator
    options: type  # the options dataclass; `options()` gives the defaults
    diagnostics: Diagnostics | None = None  # extra statistics for the logger
    probe: bool = False  # reads each turn's ground-truth probe (the rollout computes it, algorithms.md §4.1)
    reward_components: bool = False  # reads the env's named sub-rewards (info["reward_components"])
    extra_rollouts: int = 0  # rollouts per task beyond rl.group_size (MC-GRPO's median pivot)
    min_group_size: int = 1  # the smallest rl.group_size it can work with
    critic: bool = False  # the trainer learns a value function; `options` subclasses CriticOptions
    terms: Terms | None = None  # the advantage's additive parts, saved with the rollouts (optional)
    #: its anchor-state groups (GiGPO's similarity clusters); None = equal anchors within a task group
    step_groups: StepGroups | None = None
    #: option -> the trainer setting it follows when left None; another value is refused (they must agree)
    follows: Mapping[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The first line of the estimator's docstring."""
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else ""


_REGISTRY: dict[str, EstimatorSpec] = {}


def register_estimator(name: str, *, options: type, **needs: Any) -> Callable[[Estimator], Estimator]:
    """Decorator registering `fn(table, opt)` as the estimator `name`, with its options dataclass
    and the `EstimatorSpec` fields saying what it needs (probe=True, extra_rollouts=1, ...).

    Every option needs a default and a help string (use `option(...)`). Registering a different
    function under a taken name is a ValueError.
    """
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"estimator {name!r}: options must be a dataclass, got {options!r}")
    for f in dataclasses.fields(options):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"estimator {name!r}: option {f.name!r} needs a default")
        if not f.metadata.get("help"):
            raise TypeError(f"estimator {name!r}: option {f.name!r} needs a help string (use algos.registry.option)")
    if needs.get("critic") and not issubclass(options, CriticOptions):
        raise TypeError(f"estimator {name!r}: a critic estimator's options must subclass CriticOptions")

    def decorator(fn: Estimator) -> Estimator:
        old = _REGISTRY.get(name)
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"estimator {name!r} is already registered ({old.fn.__module__}.{old.fn.__qualname__})")
        _REGISTRY[name] = EstimatorSpec(name, fn, options, **needs)
        for listener in _listeners:
            listener(_REGISTRY[name])
        return fn

    return decorator


#: Called with each newly registered spec (the train config adds the estimator's `algo.<name>` section).
_listeners: list[Callable[[EstimatorSpec], None]] = []


def on_register(listener: Callable[[EstimatorSpec], None]) -> None:
    """Call `listener(spec)` for every estimator registered so far and every one registered later."""
    _listeners.append(listener)
    for spec in list(_REGISTRY.values()):
        listener(spec)


def list_estimators() -> list[str]:
    """Names of the registered estimators, sorted."""
    return sorted(_REGISTRY)


def estimator(name: str) -> EstimatorSpec:
    """The registered estimator `name`; an unknown name is a ValueError listing the known ones."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown advantage estimator {name!r}.{hint} Known estimators: {', '.join(list_estimators())}")
    return _REGISTRY[name]


def estimator_options(name: str) -> dict[str, Any]:
    """The options of estimator `name` with their defaults."""
    return dataclasses.asdict(estimator(name).options())


def make_options(name: str, **cfg: Any) -> Any:
    """Estimator `name`'s options dataclass with `cfg` over the defaults; an unknown option is a
    TypeError naming the accepted ones, a bad value a ValueError naming the option."""
    spec = estimator(name)
    accepted = [f.name for f in dataclasses.fields(spec.options)]
    unknown = [k for k in cfg if k not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        defaults = ", ".join(f"{k}={v!r}" for k, v in estimator_options(name).items()) or "(none)"
        raise TypeError(f"estimator {name!r} got unknown option(s) {', '.join(map(repr, unknown))}.{hint} "
                        f"Accepted options (defaults): {defaults}")
    try:
        return from_dict(spec.options, cfg)
    except ConfigError as exc:
        raise ValueError(f"{name}: {exc}") from None


def check_estimator(name: str, **cfg: Any) -> None:
    """Raise what `compute_advantages(name, ..., **cfg)` would for a bad name or option, without data."""
    make_options(name, **cfg)


def run_estimator(name: str, table: StepTable, opt: Any) -> dict[str, np.ndarray]:
    """The columns estimator `name` computes with its options object `opt`: "advantage" and any
    others it returns, each float64 with one value per row (row order)."""
    if not isinstance(table, StepTable):
        raise TypeError(f"compute_advantages expects a StepTable, got {type(table).__name__}")
    out = estimator(name).fn(table, opt)
    columns = dict(out) if isinstance(out, dict) else {"advantage": out}
    if "advantage" not in columns:
        raise RuntimeError(f"estimator {name!r} returned the columns {sorted(columns)} without 'advantage'")
    for key, col in columns.items():
        columns[key] = np.asarray(col, dtype=np.float64)
        if columns[key].shape != (len(table),):
            raise RuntimeError(f"estimator {name!r} returned {key!r} of shape {columns[key].shape}, "
                               f"expected ({len(table)},)")
    return columns


def advantage_terms(name: str, table: StepTable, opt: Any) -> dict[str, np.ndarray]:
    """The named parts of estimator `name`'s advantages ({} if it registered no `terms`), float64."""
    spec = estimator(name)
    return {k: np.asarray(v, dtype=np.float64) for k, v in (spec.terms(table, opt) if spec.terms else {}).items()}


def step_groups(name: str, table: StepTable, opt: Any) -> np.ndarray:
    """Per row, the step (anchor-state) group estimator `name` compares it within: its own
    `step_groups`, else rows of one task group with equal anchors (algorithms.md §1.3)."""
    spec = estimator(name)
    if spec.step_groups is not None:
        return np.asarray(spec.step_groups(table, opt), dtype=np.int64)
    return combine_codes(table.group_codes, table.anchor_codes)[0]


def compute_advantages(name: str, table: StepTable, **cfg: Any) -> np.ndarray:
    """Advantages of estimator `name` for every row of `table` (float64, row order).

    `cfg` are the estimator's options; see `estimator_options(name)` and its options dataclass.
    A NaN advantage means "leave this row out of training" (MC-GRPO's median pivot, §13.1); the
    trainer drops such rows.
    """
    return run_estimator(name, table, make_options(name, **cfg))["advantage"]


def compute_diagnostics(
    name: str, table: StepTable, advantages: np.ndarray | None = None, **cfg: Any
) -> dict[str, float]:
    """Flat `{metric: float}` for logging: `advantage_diagnostics` plus the estimator's own.

    Pass the `advantages` already computed with the same `cfg` to avoid computing them again.
    """
    opt = make_options(name, **cfg)
    if advantages is None:
        advantages = run_estimator(name, table, opt)["advantage"]
    return estimator_diagnostics(name, table, advantages, opt)


def estimator_diagnostics(name: str, table: StepTable, advantages: np.ndarray, opt: Any) -> dict[str, float]:
    """`compute_diagnostics` with the options object `opt` and the advantages already computed."""
    from algos.advantages import advantage_diagnostics

    out = advantage_diagnostics(table, advantages)
    diagnostics = estimator(name).diagnostics
    if diagnostics is not None:
        accepted = inspect.signature(diagnostics).parameters
        out.update(diagnostics(table, **{k: v for k, v in vars(opt).items() if k in accepted}))
    return out


def options_table(names: list[str] | None = None) -> str:
    """The README's estimator table: per estimator (all registered, or `names`) what it computes,
    what it needs and its options with their defaults."""
    lines = ["| `algo.name` | what it computes | needs | options (default) |", "|---|---|---|---|"]
    for name in names or list_estimators():
        spec = estimator(name)
        opts = ", ".join(f"`{f.name}={show_value(getattr(spec.options(), f.name))}`" for f in dataclasses.fields(spec.options))
        lines.append(f"| `{name}` | {spec.summary} | {'; '.join(_needs(spec))} | {opts or '(none)'} |")
    return "\n".join(lines)


def _needs(spec: EstimatorSpec) -> list[str]:
    out = ['an env with `info["ground_truth"]` (the probe)'] if spec.probe else []
    if spec.reward_components:
        out.append('an env with `info["reward_components"]`')
    if spec.extra_rollouts:
        out.append(f"G + {spec.extra_rollouts} rollouts per task")
    if spec.min_group_size > 1:
        out.append(f"`rl.group_size` >= {spec.min_group_size}")
    if spec.critic:
        out.append("a critic, trained alongside")
    out += [f"`algo.{spec.name}.{k}` = `{v}` (null follows it)" for k, v in spec.follows.items()]
    return out
