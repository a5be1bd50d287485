"""`StepTable`: the batch that advantage estimators read — one row per agent step, as column arrays.

A row is one agent decision (algorithms.md §0.2 step-independent layout, §0.3 rollout record):

    group   task group id (`uid`): the G rollouts launched from the same task and seed
    traj    trajectory id (`traj_uid`); a trajectory is identified by the pair (group, traj),
            so trajectory ids may be global (uuids) or local to their group (0..G-1)
    turn    0-based turn index inside the trajectory
    reward  the step's environment reward r_t
    anchor  a hashable, history-free key of the state the action was chosen from (§1.3)
    valid   whether the action was admissible (verl-agent's `is_action_valid`)
    text    raw anchor text for similarity grouping (§1.1 step 4); defaults to `anchor`

Optional columns, needed only by the estimators that read them:

    action      hashable key of the action taken (SALT's trajectory graph, §7); None if not given
    probe       the policy's mean log-prob of the ground-truth answer given the context before
                this turn (IGPO / A2TGPO, §4.1); NaN where no probe was taken
    value       the critic's value V(s_t) of the state before this turn (GAE)
    components  [n_rows, K] sub-rewards of the step (GDPO, §14); `component_names` names them

Rows may come in any order. Integer codes for the key columns (np.unique / a dict factorisation)
and the time order of every trajectory are computed on first use and cached; the columns are
read-only so the caches cannot go stale.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

_KEY_COLUMNS = ("group", "traj", "anchor")
_RECORD_FIELDS = ("group_id", "traj_id", "turn", "reward", "anchor", "valid")
_MISSING = object()


def _key_column(values: Any, name: str) -> np.ndarray:
    """A read-only 1-D array of hashable keys.

    All-int keys become int64; everything else (str, tuples, mixed types) is an object array, so
    1 and "1" stay different keys and long strings are not copied into fixed-width numpy strings.
    """
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"StepTable.{name} must be 1-D, got shape {values.shape}")
        arr = values.astype(object) if values.dtype.kind in "US" else values.copy()
        check_hashable = arr.dtype == object
    else:
        values = list(values)
        kinds = set(map(type, values))
        check_hashable = False
        if kinds and all(issubclass(k, numbers.Integral) and not issubclass(k, bool) for k in kinds):
            arr = np.array(values, dtype=np.int64)
        elif all(issubclass(k, str) for k in kinds):
            arr = np.array(values, dtype=object)
        else:
            arr = np.empty(len(values), dtype=object)
            for i, v in enumerate(values):  # element-wise so tuples stay elements
                arr[i] = v
            check_hashable = True
    if check_hashable:
        for i, v in enumerate(arr):
            try:
                hash(v)
            except TypeError:
                raise TypeError(
                    f"StepTable.{name}[{i}] is not hashable ({type(v).__name__}); "
                    "convert it to a str, int or tuple (e.g. an image to a hash string)"
                ) from None
    arr.flags.writeable = False
    return arr


def _numeric_column(values: Any, name: str, kind: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"StepTable.{name} must be 1-D, got shape {arr.shape}")
    if kind == "int":
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"StepTable.{name} must hold integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and arr.min() < 0:
            raise ValueError(f"StepTable.{name} must be >= 0, found {arr.min()} at row {int(arr.argmin())}")
    elif kind == "float":
        if arr.size and arr.dtype.kind not in "iufb":
            raise TypeError(f"StepTable.{name} must hold real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"StepTable.{name} must be finite, found {arr[row]} at row {row}")
    else:  # bool
        if arr.size and arr.dtype.kind != "b":
            if arr.dtype.kind not in "iu" or not np.isin(arr, (0, 1)).all():
                raise TypeError(f"StepTable.{name} must hold booleans (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    arr.flags.writeable = False
    return arr


def _component_matrix(values: list[Any]) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Per-row sub-reward dicts (or None) -> an [n, K] matrix over the sorted union of names (missing = 0)."""
    if not any(values):
        return None, ()
    names = sorted({k for v in values if v for k in v})
    col = {k: j for j, k in enumerate(names)}
    out = np.zeros((len(values), len(names)))
    for i, v in enumerate(values):
        for k, x in (v or {}).items():
            out[i, col[k]] = float(x)
    return out, tuple(names)


def factorize(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes 0..k-1 for the distinct values of `keys`; returns (codes int64, k).

    Numeric keys: np.unique(return_inverse). Object keys (strings, tuples): one dict pass in row
    order, which for long strings is several times faster than sorting them.
    """
    if keys.dtype != object:
        uniques, codes = np.unique(keys, return_inverse=True)
        return codes.astype(np.int64).reshape(-1), len(uniques)
    mapping: dict[Any, int] = {}
    codes = np.fromiter((mapping.setdefault(k, len(mapping)) for k in keys), dtype=np.int64, count=len(keys))
    return codes, len(mapping)


def combine_codes(*codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes of the tuples (codes[0][i], codes[1][i], ...): rows get the same code iff all parts match."""
    key, k = factorize(np.asarray(codes[0], dtype=np.int64))
    for c in codes[1:]:
        key, k = factorize(key * (int(c.max(initial=-1)) + 1) + c)  # re-code each time: no int64 overflow
    return key, k


@dataclass(frozen=True, eq=False, repr=False)
class StepTable:
    """One row per agent step, as column arrays (see the module docstring for the columns).

    Construct from lists or arrays of equal length; `valid` defaults to all True and `text` to
    `anchor`. Columns are stored as read-only numpy arrays.
    """

    group: Any
    traj: Any
    turn: Any
    reward: Any
    anchor: Any
    valid: Any = None
    text: Any = None
    action: Any = None
    probe: Any = None
    value: Any = None
    components: Any = None
    component_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lengths = {}
        for name in ("group", "traj", "turn", "reward", "anchor", "valid", "text", "action", "probe", "value",
                     "components"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray, Iterable)):
                raise TypeError(f"StepTable.{name} must be a list or 1-D array, got {type(value).__name__}")
            if not isinstance(value, (Sequence, np.ndarray)):  # generators, tensors, ...
                value = np.asarray(value) if hasattr(value, "__array__") else list(value)
                object.__setattr__(self, name, value)
            lengths[name] = len(value)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"StepTable columns must have equal lengths, got {lengths}")
        n = lengths["group"]

        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        for name in _KEY_COLUMNS:
            set_(name, _key_column(getattr(self, name), name))
        set_("turn", _numeric_column(self.turn, "turn", "int"))
        set_("reward", _numeric_column(self.reward, "reward", "float"))
        valid = np.ones(n, dtype=bool) if self.valid is None else self.valid
        set_("valid", _numeric_column(valid, "valid", "bool"))
        if self.text is None:
            set_("text", self.anchor)
        else:
            set_("text", _key_column(self.text, "text"))
        if self.action is not None:
            set_("action", _key_column(self.action, "action"))
        probe = np.full(n, np.nan) if self.probe is None else np.asarray(self.probe, dtype=np.float64)
        if probe.shape != (n,):
            raise ValueError(f"StepTable.probe must be 1-D, got shape {probe.shape}")
        probe.flags.writeable = False
        set_("probe", probe)
        if self.value is not None:
            set_("value", _numeric_column(self.value, "value", "float"))
        if self.components is not None:
            comp = np.asarray(self.components, dtype=np.float64).reshape(n, -1)
            comp.flags.writeable = False
            set_("components", comp)
            names = tuple(self.component_names) or tuple(f"r{k}" for k in range(comp.shape[1]))
            if len(names) != comp.shape[1]:
                raise ValueError(f"StepTable.component_names has {len(names)} names for {comp.shape[1]} components")
            set_("component_names", names)

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_records(cls, records: Iterable[Any]) -> StepTable:
        """Build a table from step records: dicts or objects with `group_id`, `traj_id`, `turn`,
        `reward`, `anchor` and optionally `valid` (default True) and `text` (default `anchor`)."""
        columns: dict[str, list] = {f: [] for f in _RECORD_FIELDS}
        texts: list = []
        has_text = False
        optional: dict[str, list] = {"action": [], "probe": [], "value": [], "components": []}
        for i, rec in enumerate(records):
            get = rec.get if isinstance(rec, Mapping) else (lambda k, d=None, _r=rec: getattr(_r, k, d))
            for f in _RECORD_FIELDS:
                value = get(f, True if f == "valid" else _MISSING)
                if value is _MISSING:
                    raise ValueError(f"record {i} ({type(rec).__name__}) has no field {f!r}; "
                                     f"required: {', '.join(_RECORD_FIELDS[:-1])} (valid optional)")
                columns[f].append(value)
            text = get("text", None)
            has_text |= text is not None
            texts.append(text)
            for f, values in optional.items():
                values.append(get(f, None))
        if has_text:
            texts = [a if t is None else t for t, a in zip(texts, columns["anchor"])]
        probe = [np.nan if p is None else p for p in optional["probe"]]
        value = optional["value"] if optional["value"] and None not in optional["value"] else None
        comps, names = _component_matrix(optional["components"])
        return cls(group=columns["group_id"], traj=columns["traj_id"], turn=columns["turn"],
                   reward=columns["reward"], anchor=columns["anchor"], valid=columns["valid"],
                   text=texts if has_text else None,
                   action=optional["action"] if any(a is not None for a in optional["action"]) else None,
                   probe=probe, value=value, components=comps, component_names=names)

    def take(self, rows: Any) -> StepTable:
        """A new table with the given rows (an index array or a boolean mask), in that order."""
        rows = np.asarray(rows)
        pick = lambda col: None if col is None else col[rows]  # noqa: E731
        return StepTable(group=self.group[rows], traj=self.traj[rows], turn=self.turn[rows],
                         reward=self.reward[rows], anchor=self.anchor[rows], valid=self.valid[rows],
                         text=None if self.text is self.anchor else self.text[rows],
                         action=pick(self.action), probe=self.probe[rows], value=pick(self.value),
                         components=pick(self.components), component_names=self.component_names)

    # ------------------------------------------------------------------ sizes

    def __len__(self) -> int:
        return len(self.group)

    @property
    def n_rows(self) -> int:
        return len(self.group)

    def __repr__(self) -> str:
        return f"StepTable(n_rows={self.n_rows}, n_groups={self.n_groups}, n_trajs={self.n_trajs})"

    # ------------------------------------------------------------------ cached integer codes

    @cached_property
    def _group_factor(self) -> tuple[np.ndarray, int]:
        return factorize(self.group)

    @property
    def group_codes(self) -> np.ndarray:
        """int64 code of each row's task group (0..n_groups-1)."""
        return self._group_factor[0]

    @property
    def n_groups(self) -> int:
        return self._group_factor[1]

    @cached_property
    def _traj_factor(self) -> tuple[np.ndarray, int]:
        raw, _ = factorize(self.traj)
        return combine_codes(self.group_codes, raw)

    @property
    def traj_codes(self) -> np.ndarray:
        """int64 code of each row's trajectory, i.e. of the pair (group, traj) (0..n_trajs-1)."""
        return self._traj_factor[0]

    @property
    def n_trajs(self) -> int:
        return self._traj_factor[1]

    @cached_property
    def _anchor_factor(self) -> tuple[np.ndarray, int]:
        return factorize(self.anchor)

    @property
    def anchor_codes(self) -> np.ndarray:
        """int64 code of each row's anchor, equal codes iff equal anchors (across all groups)."""
        return self._anchor_factor[0]

    @property
    def n_anchors(self) -> int:
        return self._anchor_factor[1]

    # ------------------------------------------------------------------ time order

    @cached_property
    def time_order(self) -> np.ndarray:
        """Row indices sorted by (trajectory, turn): each trajectory's steps, in time order.

        Raises ValueError if a trajectory has two rows with the same turn.
        """
        order = np.lexsort((self.turn, self.traj_codes))
        t, k = self.traj_codes[order], self.turn[order]
        dup = (t[1:] == t[:-1]) & (k[1:] == k[:-1])
        if dup.any():
            row = int(order[1:][dup][0])
            raise ValueError(f"duplicate turn {self.turn[row]} in trajectory (group={self.group[row]!r}, "
                             f"traj={self.traj[row]!r}); every (group, traj, turn) must be unique")
        return order

    @cached_property
    def traj_lengths(self) -> np.ndarray:
        """Number of rows of each trajectory, indexed by trajectory code."""
        return np.bincount(self.traj_codes, minlength=self.n_trajs)

    @cached_property
    def position(self) -> np.ndarray:
        """0-based rank of each row inside its trajectory in time order (== turn when turns are 0..T-1)."""
        order = self.time_order
        starts = np.cumsum(self.traj_lengths) - self.traj_lengths  # first sorted slot of each trajectory
        pos = np.empty(self.n_rows, dtype=np.int64)
        pos[order] = np.arange(self.n_rows) - starts[self.traj_codes[order]]
        return pos

