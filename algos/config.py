"""Typed dataclass configs: dict/YAML round trips and dotted command-line overrides.

A config is a (possibly nested) dataclass. Values arriving from YAML or the command line are
coerced to the annotated field types (int, float, bool, str, Optional/Union, tuple, list, dict,
Literal, nested dataclasses), and every error names the full dotted key, so a typo in a 40-field
config is a one-line fix instead of a silent default:

    cfg = parse_cli(TrainConfig, ["--config", "run.yaml", "algo.name=grpo", "train.lr=1e-5"])

Numeric fields declare their valid values as field metadata, which any dataclass tool carries
along (OmegaConf structured configs, tyro and dataclasses itself ignore keys they do not know):

    group_size: int = ranged(8, ge=1)       # = dataclasses.field(default=8, metadata={"range": Range(ge=1)})
    lr: float = ranged(2e-4, gt=0)          # floats must also be finite: nan and inf are refused
    threads: Optional[int] = ranged(None, ge=1)   # null stays allowed

`check_ranges(cfg)` checks them all; `from_dict` (and so `load_yaml`, `apply_overrides` and
`parse_cli`) calls it on every config it builds, so a value out of range is a ConfigError naming the
key, the value and the range before any work starts. (HfArgumentParser passes field metadata on to
argparse as keyword arguments: a config given to it needs the "range" key filtered out first.)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")
_TRUE, _FALSE = {"true", "yes", "on", "1", "y"}, {"false", "no", "off", "0", "n"}


class ConfigError(ValueError):
    """A config key is unknown, missing, or has a value of the wrong type."""


#: The field-metadata key that holds a numeric field's `Range`.
RANGE = "range"


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of a numeric config field: bounds named as in `annotated_types.Interval`
    (ge >=, gt >, le <=, lt <). Float values must also be finite. For list fields every item is
    checked; None passes (the field's type decides whether null is allowed)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self, integer: bool = False) -> str:
        """'an integer >= 1', 'a finite number in (0, 1]', 'a finite number > 0', ..."""
        kind = "an integer" if integer else "a finite number"
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        high = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None else None
        if low and high:
            return f"{kind} in {low[0]}{_num(low[1])}, {_num(high[1])}{high[0]}"
        if low:
            return f"{kind} {'>=' if low[0] == '[' else '>'} {_num(low[1])}"
        if high:
            return f"{kind} {'<=' if high[0] == ']' else '<'} {_num(high[1])}"
        return kind


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def ranged(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, default_factory: Any = dataclasses.MISSING,
           metadata: dict[str, Any] | None = None) -> Any:
    """A dataclass field with a declared valid range: `dataclasses.field(metadata={"range": Range(...)})`."""
    meta = {**(metadata or {}), RANGE: Range(ge=ge, gt=gt, le=le, lt=lt)}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def field_range(f: dataclasses.Field) -> Range | None:
    """The `Range` a field declares, or None."""
    return f.metadata.get(RANGE)


def check_ranges(cfg: Any, prefix: str = "") -> None:
    """Raise ConfigError for the first field of `cfg` (nested sections included) whose value is
    outside its declared `Range`; the message is one line naming the key, the value and the range."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, key + ".")
            continue
        rng = field_range(f)
        if rng is None or value is None:
            continue
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, item in items:
            if not rng.contains(item):
                where = key if i is None else f"{key}[{i}]"
                integer = isinstance(item, int) and not isinstance(item, bool)
                nullable = _is_optional(_hints(type(cfg)).get(f.name)) and i is None
                shown = value if i is None else item
                raise ConfigError(f"{where}={shown!r} is out of range: it must be {rng.describe(integer)}"
                                  f"{' (or null)' if nullable else ''}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass config (tuples become lists so YAML stays portable)."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


def show_value(value: Any) -> str:
    """A config value as YAML and the command line write it: null, true/false, [1, 2]."""
    if isinstance(value, (list, tuple, dict)) or dataclasses.is_dataclass(value):
        value = to_dict({"v": value})["v"]
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from a nested dict, coercing values, rejecting unknown keys and values outside
    their declared ranges (`check_ranges`)."""
    cfg = _build(cls, data, "", cls)
    check_ranges(cfg)
    return cfg


def load_yaml(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, yaml.safe_load(Path(path).read_text()) or {})


def save_yaml(cfg: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a new config with dotted `key=value` overrides applied (the input is untouched).

    Values are parsed like YAML (`5` -> int, `null` -> None, `[1, 2]` -> list) and then coerced to
    the field type. The result is rebuilt through `from_dict` so every field is re-validated and
    any `__post_init__` checks run again.
    """
    data = to_dict(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        parts = key.split(".")
        tp = _field_type(type(cfg), parts)
        text = raw.strip()
        value = yaml.safe_load(text) if text else ""
        # YAML reads `name=yes` as True and `tag=010` as 8: a str field wants the text as typed,
        # and `mode=on` only matches Literal["on", "off"] as text.
        if value is not None and not isinstance(value, str):
            first, second = (text, value) if _strip_optional(tp) is str else (value, text)
            try:
                value = _coerce(first, tp, key, type(cfg))
            except ConfigError as e:
                try:
                    value = _coerce(second, tp, key, type(cfg))
                except ConfigError:
                    raise e from None
        node = data
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):  # an Optional[Section] that is currently None
                node[p] = {}
            node = node[p]
        if _dataclass_in(tp) and isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            value = {**node[parts[-1]], **value}  # `section={a: 1}` updates the section's fields
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


def valid_keys(cls: type) -> list[str]:
    """Every valid dotted key of `cls`, sections included (`algo`, `algo.name`, ...)."""
    return _all_keys(cls)


def parse_cli(cls: type[T], argv: list[str] | None = None) -> T:
    """`[--config file.yaml] [key=value ...]`: YAML first (else defaults), then the overrides."""
    path, overrides = split_cli(sys.argv[1:] if argv is None else argv)
    cfg = load_yaml(cls, path) if path else from_dict(cls, {})
    return apply_overrides(cfg, overrides)


def split_cli(argv: list[str]) -> tuple[str | None, list[str]]:
    """The `--config` path (or None) and the `key=value` overrides of a command line."""
    path, overrides, args = None, [], iter(argv)
    for arg in args:
        if arg == "--config":
            if (path := next(args, None)) is None:
                raise ConfigError("--config needs a file path")
        elif arg.startswith("--config="):
            path = arg.partition("=")[2]
        elif "=" in arg:
            overrides.append(arg.lstrip("-"))  # accept `--train.lr=1e-5` as well
        else:
            raise ConfigError(f"unexpected argument {arg!r}; expected --config FILE or key=value")
    return path, overrides


# --- internals ---------------------------------------------------------------------------------

def _hints(cls: type) -> dict[str, Any]:
    # get_type_hints resolves string annotations from `from __future__ import annotations`.
    hints = get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(cls) if f.init}


def _dataclass_in(tp: Any) -> type | None:
    tp = _strip_optional(tp)
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _strip_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _hints(cls).items():
        keys.append(prefix + name)
        if (sub := _dataclass_in(tp)) is not None:
            keys += _all_keys(sub, f"{prefix}{name}.")
    return keys


def _unknown(root: type, cls: type, key: str, bad_part: str) -> ConfigError:
    close = difflib.get_close_matches(key, _all_keys(root), n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    level = bad_part.rpartition(".")[0] or "<top level>"
    where = f" ('{bad_part}' does not exist)" if bad_part != key else ""
    return ConfigError(f"unknown config key '{key}'{where}.{hint} Valid keys under {level}: "
                       f"{', '.join(_hints(cls))}")


def _field_type(root: type, parts: list[str]) -> Any:
    cls, tp = root, None
    for i, part in enumerate(parts):
        if cls is None:
            section, key = ".".join(parts[:i]), ".".join(parts)
            raise ConfigError(f"'{section}' is not a section; cannot set '{key}'")
        hints = _hints(cls)
        if part not in hints:
            raise _unknown(root, cls, ".".join(parts), ".".join(parts[: i + 1]))
        tp = hints[part]
        cls = _dataclass_in(tp)
    return tp


def _build(cls: type, data: Any, prefix: str, root: type) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping for "
                          f"{cls.__name__}, got {data!r}")
    hints = _hints(cls)
    for key in data:
        if key not in hints:
            raise _unknown(root, cls, f"{prefix}{key}", f"{prefix}{key}")
    for f in dataclasses.fields(cls):
        no_default = f.default is f.default_factory is dataclasses.MISSING
        if f.init and no_default and f.name not in data:
            raise ConfigError(f"missing required config key '{prefix}{f.name}'")
    return cls(**{k: _coerce(v, hints[k], f"{prefix}{k}", root) for k, v in data.items()})


def _type_name(tp: Any) -> str:
    plain = isinstance(tp, type) and not get_args(tp)  # list[str] passes isinstance(.., type)
    return tp.__name__ if plain else str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, root: type) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is Any:
        return value
    if (sub := _dataclass_in(tp)) is not None and tp is sub:
        return _build(sub, value, key + ".", root)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, root)
            except ConfigError as e:
                errors.append(e)
        raise errors[0] if len(errors) == 1 else bad  # Optional[X]: X's message is more specific
    if origin is Literal:
        for allowed in args:  # match on type too: `True == 1` must not satisfy Literal[1]
            if value == allowed and type(value) is type(allowed):
                return allowed
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of "
                          f"{', '.join(repr(a) for a in args)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise bad
    if tp in (int, float):
        if isinstance(value, bool):
            raise bad  # bool is an int subclass, but `lr: true` is certainly a mistake
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as a string
            for parse in (int, float):
                try:
                    value = parse(value.strip())
                    break
                except ValueError:
                    pass
        if tp is float and isinstance(value, (int, float)):
            return float(value)
        if tp is int and isinstance(value, int):
            return value
        if tp is int and isinstance(value, float) and value.is_integer():
            return int(value)  # `steps: 1e4` means 10000
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `name: 123` in YAML
        raise bad
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {_type_name(tp)} ({len(args)} items), "
                                  f"got {value!r}")
            types_ = args
        else:  # list[T], tuple[T, ...], bare list/tuple
            types_ = [args[0] if args else Any] * len(value)
        items = [_coerce(v, t, f"{key}[{i}]", root) for i, (v, t) in enumerate(zip(value, types_))]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad
        kt, vt = args or (Any, Any)
        return {_coerce(k, kt, f"{key} (a key)", root): _coerce(v, vt, f"{key}.{k}", root)
                for k, v in value.items()}
    if origin is None and isinstance(tp, type) and not isinstance(value, tp):
        raise bad
    return value
