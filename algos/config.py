"""Typed dataclass configs on OmegaConf: YAML files, dotted command-line overrides, checked values.

A config is a (possibly nested) dataclass, used as an OmegaConf structured config: OmegaConf parses
`key=value` overrides (verl's `a.b=c` syntax; values read as YAML: `5`, `null`, `[1, 2]`,
`{size: 6}`), reads and writes YAML, converts and checks values against the annotated types
(int, float, bool, str, Optional, Literal, list, tuple, dict, nested dataclasses) and builds the
dataclass, whose `__post_init__` checks run. This module keeps what OmegaConf lacks:

- errors that name the full dotted key and teach: an unknown key suggests the closest full key and
  lists the valid keys at its level; a type error says the type the field holds;
- a str or Literal field takes the text as typed (YAML would read `run_name=yes` as True);
- a dict-typed field given a mapping is replaced, while a section given one is updated; a dotted
  key into a dict field sets one entry (`env.kwargs.max_steps=4`; refused while the field is null);
- `{size:6}` (no space after the colon, one key to YAML) is an error that shows `{size: 6}`;
- declared numeric ranges, as field metadata that any dataclass tool carries along:

    group_size: int = ranged(8, ge=1)       # = dataclasses.field(default=8, metadata={"range": Range(ge=1)})
    lr: float = ranged(2e-4, gt=0)          # floats must also be finite: nan and inf are refused
    threads: Optional[int] = ranged(None, ge=1)   # null stays allowed

`check_ranges(cfg)` checks them all; every build path here (`from_dict`, `load_yaml`,
`apply_overrides`, `parse_cli`) calls it, so a value out of range is a ConfigError naming the key,
the value and the range before any work starts.

    cfg = parse_cli(TrainConfig, ["--config", "run.yaml", "algo.name=grpo", "rl.lr=1e-5"])
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import inspect
import math
import re
import types
from pathlib import Path
from typing import Any, Iterator, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

T = TypeVar("T")


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
    return _lists(OmegaConf.to_container(OmegaConf.structured(cfg)))


def show_value(value: Any) -> str:
    """A config value as the command line writes it: null, true/false, [1, 2], {a: 1}."""
    if dataclasses.is_dataclass(value):
        value = to_dict(value)
    if isinstance(value, (list, tuple, dict)):
        return yaml.safe_dump(_lists(value), default_flow_style=True, width=10**6).strip()
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from a nested dict: unknown keys, values of the wrong type and values outside
    their declared ranges are ConfigErrors naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping for {cls.__name__}, got {data!r}")
    conf = OmegaConf.structured(cls)
    with _named_errors(cls):
        # value by value rather than OmegaConf.merge, which leaves list items unchecked (2.4.0)
        for key, value in _leaves(cls, cls, data, ""):
            OmegaConf.update(conf, key, value, merge=False)
        return _build(cls, conf)


def load_yaml(cls: type[T], path: str | Path) -> T:
    with _named_errors(cls):
        data = OmegaConf.to_container(OmegaConf.load(path)) or {}
    return from_dict(cls, data)


def save_yaml(cfg: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg), sort_keys=False))
    return path


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a new config with dotted `key=value` overrides applied (the input is untouched); the
    result is built again, so every field is re-checked and `__post_init__` runs again."""
    root = type(cfg)
    conf = OmegaConf.structured(cfg)
    with _named_errors(root):
        for item in overrides:
            key, sep, text = item.partition("=")
            key, text = key.strip(), text.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            parts = key.split(".")
            tp = _field_type(root, parts)
            parent = ".".join(parts[:-1])
            if parent and _is_mapping(_field_type(root, parts[:-1])) and OmegaConf.select(conf, parent) is None:
                # null may stand for defaults elsewhere (env.kwargs): one entry would drop them
                raise ConfigError(f"{key}: {parent} is null, so there is no mapping to set one entry of; "
                                  f"give the whole mapping, e.g. {parent}={{{parts[-1]}: ...}}")
            if text == "null" and _strip_optional(tp) is str and not _is_optional(tp):
                raise ConfigError(f"{key}=null: {key} is a string and cannot be null; an empty value "
                                  f"({key}=) clears it")
            section = _dataclass_in(tp) is not None
            OmegaConf.update(conf, key, _value(text, tp), merge=section)
        return _build(root, conf)


def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation: its `help` metadata, else the `#:` comment lines above it, else
    the `# comment` after it (the Sphinx conventions the config modules use), from the class or the
    base class that declares it (a class made at run time has no source of its own)."""
    names = {f.name for f in dataclasses.fields(cls)}
    docs = {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if f.metadata.get("help")}
    for klass in cls.__mro__:
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        above: list[str] = []
        for line in lines[1:]:
            text = line.strip()
            if text.startswith("#:"):
                above.append(text[2:].strip())
                continue
            name = re.match(r"(\w+)\s*:", text)
            if name and name[1] in names and name[1] not in docs:
                if doc := " ".join(above) or text.partition("  # ")[2].strip():
                    docs[name[1]] = doc
            above = []
    return docs


def valid_keys(cls: type) -> list[str]:
    """Every valid dotted key of `cls`, sections included (`algo`, `algo.name`, ...)."""
    return _all_keys(cls)


def cli_parser(prog: str, description: str = "", epilog: str = "") -> argparse.ArgumentParser:
    """The command line of a config-driven command: `[--config FILE] [key=value ...]`; callers add
    their own flags (`groupwise train` adds --resume, --model, ...)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, add_help=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-h", "--help", action="store_true", help="show this help and every option")
    parser.add_argument("--config", metavar="FILE", help="a YAML file of settings, applied before the overrides")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. algo.name=grpo rl.lr=1e-5 (see the options below)")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`parser.parse_args`, also taking `--key=value` as the override `key=value` (HfArgumentParser's
    habit); a bad argument is a ConfigError instead of argparse's exit."""
    parser.exit_on_error = False
    try:
        args, extra = parser.parse_known_intermixed_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from None
    for arg in extra:  # argparse leaves positionals after an unknown `--key=value` here too
        if "=" not in arg or (arg.startswith("-") and not arg.startswith("--")):
            raise ConfigError(f"unexpected argument {arg!r}; expected --config FILE or key=value")
        args.overrides.append(arg.removeprefix("--"))
    return args


def parse_cli(cls: type[T], argv: list[str]) -> T:
    """`[--config file.yaml] [key=value ...]`: YAML first (else defaults), then the overrides."""
    args = parse_args(cli_parser(cls.__name__), argv)
    return build_config(cls, args.config, args.overrides)


def build_config(cls: type[T], path: str | None, overrides: list[str]) -> T:
    """The config of a command line: the YAML file (else the defaults), then the overrides."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"--config {path}: no such file")
    return apply_overrides(load_yaml(cls, path) if path else cls(), overrides)


# --- internals ---------------------------------------------------------------------------------

def _lists(v: Any) -> Any:
    """`v` with every tuple inside it a list (OmegaConf 2.4 keeps tuples; YAML and JSON want lists)."""
    if isinstance(v, dict):
        return {k: _lists(x) for k, x in v.items()}
    return [_lists(x) for x in v] if isinstance(v, (list, tuple)) else v


def _build(cls: type[T], conf: Any) -> T:
    """The dataclass of an OmegaConf config, its ranges checked."""
    cfg = OmegaConf.to_object(conf)
    check_ranges(cfg)
    return cfg


@contextlib.contextmanager
def _named_errors(root: type) -> Iterator[None]:
    """OmegaConf's errors as one-line ConfigErrors that name the dotted key and the field's type."""
    try:
        yield
    except MissingMandatoryValue as exc:
        raise ConfigError(f"missing required config key '{exc.full_key}'") from None
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", "") or "")
        try:
            tp = _strip_optional(_field_type(root, key.split("[")[0].split(".")))
        except ConfigError:
            tp = None
        if not hasattr(exc, "value") or tp is None or key.endswith("]"):
            raise ConfigError(f"{key or 'config'}: {str(getattr(exc, 'msg', exc)).splitlines()[0]}") from None
        value = exc.value
        if get_origin(tp) is Literal:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of "
                              f"{', '.join(repr(a) for a in get_args(tp))}") from None
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})") from None


def _value(text: str, tp: Any) -> Any:
    """An override's value: null for an optional field, the text as typed for str and Literal fields,
    else parsed as YAML by OmegaConf (`1e-5` is a float there, unlike in PyYAML)."""
    plain = _strip_optional(tp)
    if text == "null" and _is_optional(tp):
        return None
    if plain is str or (get_origin(plain) is Literal and text in get_args(plain)):
        return text
    if not text:
        return ""
    value = OmegaConf.from_dotlist([f"v={text}"])["v"]
    glued = [k for k, v in value.items() if v is None and ":" in str(k)] if OmegaConf.is_dict(value) else []
    if glued:  # YAML reads {size:6} as the key 'size:6' with no value
        raise ConfigError(f"{text}: {glued[0]!r} reads as one key with no value; YAML needs a space after "
                          f"the colon ({{{str(glued[0]).replace(':', ': ', 1)}}})")
    return value


def _leaves(root: type, cls: type, data: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every field a nested dict sets; sections given a mapping are walked."""
    hints = _hints(cls)
    for key, value in data.items():
        if key not in hints:
            raise _unknown(root, cls, f"{prefix}{key}", f"{prefix}{key}")
        if (sub := _dataclass_in(hints[key])) is not None and isinstance(value, dict):
            yield from _leaves(root, sub, value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


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
    """The annotated type of a dotted key; past a dict field, the type of that dict's values (one entry)."""
    cls, tp = root, None
    for i, part in enumerate(parts):
        if cls is None:
            section, key = ".".join(parts[:i]), ".".join(parts)
            if not _is_mapping(tp):
                raise ConfigError(f"'{section}' is not a section; cannot set '{key}'")
            if len(parts) > i + 1:
                raise ConfigError(f"{key}: a dotted key sets one entry of {section}; give a nested value as a "
                                  f"mapping, e.g. {section}.{part}={{{parts[i + 1]}: ...}}")
            args = get_args(_strip_optional(tp))
            return args[1] if len(args) == 2 else Any
        hints = _hints(cls)
        if part not in hints:
            raise _unknown(root, cls, ".".join(parts), ".".join(parts[: i + 1]))
        tp = hints[part]
        cls = _dataclass_in(tp)
    return tp


def _is_mapping(tp: Any) -> bool:
    tp = _strip_optional(tp)
    return tp is dict or get_origin(tp) is dict


def _type_name(tp: Any) -> str:
    plain = isinstance(tp, type) and not get_args(tp)  # list[str] passes isinstance(.., type)
    return tp.__name__ if plain else str(tp).replace("typing.", "")
