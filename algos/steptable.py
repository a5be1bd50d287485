"""`StepTable`: the batch that advantage estimators read — one row per agent step, as column arrays.

A row is one agent decision (algorithms.md §0.2 step-independent layout, §0.3 rollout record):

    group   task group id (`uid`): the G rollouts launched from the same task and seed
    traj    trajectory id (`traj_uid`); a trajectory is identified by the pair (group, traj),
            so trajectory ids may be global (uuids) or local to their group (0..G-1)
    turn    0-based turn index inside the trajectory
    reward  the step's environment reward r_t
    anchor  a hashable, history-free key of the state the action was chosen from (§1.3)
    valid   whether the action was admissible (verl-agent's `is_action_valid`)
    text    raw anchor text for similarity grouping (§1.1 step 4); defaults to `anchor`. Image
            anchors ("img:<sha1>:t16:<thumbnail>", envs.base.image_anchor) carry the thumbnail
            that similarity grouping compares (see `similarity_codes`)

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
from difflib import SequenceMatcher
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


# ---------------------------------------------------------------------------------------------
# similarity grouping of anchors (GiGPO §1.1 step 4, reused by HGPO)


def _image_parts(anchor: Any) -> tuple[bool, np.ndarray | None]:
    """(is an image anchor, its thumbnail or None). The anchor format belongs to the env contract
    (envs/base.py), hence the import from there; it is lazy so algos does not load envs up front."""
    from envs.base import anchor_thumbnail, is_image_anchor

    return is_image_anchor(anchor), anchor_thumbnail(anchor)


def _thumbnail_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - mean |a - b| over cells of 4-bit thumbnails scaled to [0, 1]; a: [d] or [m, d], b: [d].

    The cell differences are summed as integers, so the value does not depend on the summation
    order and the vectorised clustering agrees with `anchor_similarity` to the last bit.
    """
    diff = np.abs(a.astype(np.int16, copy=False) - b.astype(np.int16, copy=False)).sum(axis=-1, dtype=np.int32)
    return 1.0 - diff / (15.0 * a.shape[-1])


def anchor_similarity(a: str, b: str) -> float:
    """The similarity that similarity grouping thresholds, in [0, 1].

    Two text anchors: difflib.SequenceMatcher(None, a, b).ratio() (verl-agent's measure).
    Two image anchors with thumbnails of one size: 1 - mean absolute difference of the thumbnails
    scaled to [0, 1] (a perceptual distance on the downsampled grayscale frame).
    Anything else (image vs text, thumbnails of different sizes, an image anchor without a
    thumbnail): 1.0 if the anchors are equal, else 0.0.
    """
    if a == b:
        return 1.0
    (a_img, a_thumb), (b_img, b_thumb) = _image_parts(a), _image_parts(b)
    if not a_img and not b_img:
        return SequenceMatcher(None, a, b).ratio()
    if a_thumb is None or b_thumb is None or a_thumb.shape != b_thumb.shape:
        return 0.0
    return float(_thumbnail_similarity(a_thumb.reshape(-1), b_thumb.reshape(-1)))


def _greedy_thumbnail_clusters(thumbs: np.ndarray, thresh: float) -> tuple[np.ndarray, int]:
    """Greedy clusters of [m, d] thumbnails in row order: a row joins the first cluster whose
    representative (first member) is similar enough, else it opens a cluster.

    Loops once per cluster, not per pair: the first unassigned row opens a cluster and every
    unassigned row similar to it joins at once. That is the row-by-row greedy rule, because the
    rows before a new representative are all assigned and an unassigned row was not similar to
    any earlier representative.
    """
    free = thumbs.astype(np.int16)  # the unassigned rows, converted once rather than per pass
    idx = np.arange(len(thumbs))
    labels = np.empty(len(thumbs), dtype=np.int64)
    k = 0
    while idx.size:
        joins = _thumbnail_similarity(free, free[0]) >= thresh  # the representative joins itself
        labels[idx[joins]] = k
        k += 1
        if joins[1:].any():
            free, idx = free[~joins], idx[~joins]
        else:  # a singleton: drop the first row with a view instead of copying the rest
            free, idx = free[1:], idx[1:]
    return labels, k


def _greedy_text_clusters(texts: list[str], thresh: float) -> tuple[np.ndarray, int]:
    """Greedy clusters of distinct texts in order, compared with their representatives by difflib."""
    labels = np.empty(len(texts), dtype=np.int64)
    reps: list[tuple[str, int]] = []
    for i, text in enumerate(texts):
        for rep, code in reps:
            sm = SequenceMatcher(None, text, rep)
            # real_quick_ratio >= quick_ratio >= ratio: cheap upper bounds first
            if sm.real_quick_ratio() >= thresh and sm.quick_ratio() >= thresh and sm.ratio() >= thresh:
                labels[i] = code
                break
        else:
            labels[i] = len(reps)
            reps.append((text, len(reps)))
    return labels, len(reps)


def _cluster_distinct(values: list[Any], thresh: float, first_rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Cluster labels of one task group's distinct anchors, given in batch order of first appearance.

    Anchors of different kinds are never similar, so each kind is clustered on its own: texts by
    difflib, image thumbnails of each size by `_greedy_thumbnail_clusters` (vectorised over the
    group), and image anchors without a thumbnail stay alone (only an equal anchor joins them).
    """
    labels = np.empty(len(values), dtype=np.int64)
    texts: list[int] = []
    thumbs: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    n = 0
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"similarity grouping needs text or image anchors (str); row {int(first_rows[i])} "
                            f"has {type(v).__name__}")
        is_img, thumb = _image_parts(v)
        if not is_img:
            texts.append(i)
        elif thumb is None:
            labels[i] = n
            n += 1
        else:
            thumbs.setdefault(thumb.shape, []).append((i, thumb.reshape(-1)))
    if texts:
        sub, k = _greedy_text_clusters([values[i] for i in texts], thresh)
        labels[texts] = n + sub
        n += k
    for members in thumbs.values():
        idx = [i for i, _ in members]
        sub, k = _greedy_thumbnail_clusters(np.stack([t for _, t in members]), thresh)
        labels[idx] = n + sub
        n += k
    return labels, n


def similarity_codes(table: StepTable, similarity_thresh: float = 0.95) -> tuple[np.ndarray, int]:
    """Similarity groups of the rows' `text` (= `anchor` unless given) inside each task group:
    an int64 code per row and the number of groups (algorithms.md §1.1 step 4, `enable_similarity`).

    Rows are visited in batch order and join the first cluster whose representative (first member)
    has `anchor_similarity` >= similarity_thresh, else open one. Equal anchors always share a
    cluster, so each distinct anchor is compared once. Text uses difflib's ratio; image anchors
    compare their thumbnails (1 - mean absolute difference); image vs text is never similar.
    The two measures live on different scales: 6x6 Sokoban frames one player move apart score
    about 0.99 as thumbnails (0.93-0.98 as text grids), and a one-pixel change at most
    1 - 1/(15 * 256) ~ 0.9997 with 16x16 thumbnails, so telling small sprite moves apart needs a
    threshold near 0.999; GiGPO's 0.95 merges most frames of such a scene.
    """
    if not 0.0 < similarity_thresh <= 1.0:
        raise ValueError(f"similarity_thresh must be in (0, 1], got {similarity_thresh}")
    n = len(table)
    codes = np.empty(n, dtype=np.int64)
    value_codes = table.anchor_codes if table.text is table.anchor else factorize(table.text)[0]
    by_group = np.argsort(table.group_codes, kind="stable")  # batch order inside each group
    bounds = np.cumsum(np.bincount(table.group_codes, minlength=table.n_groups))[:-1]
    n_clusters = 0
    for rows in np.split(by_group, bounds) if n else ():
        _, first, inverse = np.unique(value_codes[rows], return_index=True, return_inverse=True)
        order = np.argsort(first)  # distinct anchors in order of first appearance
        first_rows = rows[first[order]]
        labels, k = _cluster_distinct([table.text[r] for r in first_rows], similarity_thresh, first_rows)
        by_distinct = np.empty(len(first), dtype=np.int64)
        by_distinct[order] = labels
        codes[rows] = n_clusters + by_distinct[inverse.reshape(-1)]
        n_clusters += k
    return codes, n_clusters


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
    def from_records(cls, records: Iterable[Any], value: Sequence[float] | None = None) -> StepTable:
        """Build a table from step records: dicts or objects with `group_id`, `traj_id`, `turn`,
        `reward`, `anchor` and optionally `valid` (default True) and `text` (default `anchor`).
        `value` (the critic's value per record) overrides the records' own `value` fields."""
        columns: dict[str, list] = {f: [] for f in _RECORD_FIELDS}
        texts: list = []
        has_text = False
        optional: dict[str, list] = {"action": [], "probe": [], "value": [], "components": []}
        for i, rec in enumerate(records):
            get = rec.get if isinstance(rec, Mapping) else (lambda k, d=None, _r=rec: getattr(_r, k, d))
            for f in _RECORD_FIELDS:
                field_value = get(f, True if f == "valid" else _MISSING)
                if field_value is _MISSING:
                    raise ValueError(f"record {i} ({type(rec).__name__}) has no field {f!r}; "
                                     f"required: {', '.join(_RECORD_FIELDS[:-1])} (valid optional)")
                columns[f].append(field_value)
            text = get("text", None)
            has_text |= text is not None
            texts.append(text)
            for f, values in optional.items():
                values.append(get(f, None))
        if has_text:
            texts = [a if t is None else t for t, a in zip(texts, columns["anchor"])]
        probe = [np.nan if p is None else p for p in optional["probe"]]
        if value is None:
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

