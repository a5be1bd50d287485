"""JSON schemas of typed Python parameters, and checking a model's arguments against them.

Each supported annotation becomes a node that knows its JSON schema and how to check (and coerce)
a value: str, int, float, bool, list[X], dict[str, X], Optional[X] / X | None, Literal[...],
dataclasses and TypedDicts (nested objects), Annotated[X, "description"].

Why not `transformers.utils.get_json_schema` plus jsonschema (TRL's route; tried on the branch
wip-tool-schemas, 642 lines against these 515): get_json_schema refuses parameters without a
docstring line and docstrings without a Google "Args:" section, has no dataclass or TypedDict
parameters, ignores Annotated descriptions and defaults, and marks Optional parameters required
and not nullable; jsonschema only says whether the JSON fits, so the tool's dataclass arguments
must still be built (and their __post_init__ errors reported) and a JSON 3 made a float, and its
messages name nested paths in its own form. Working around each cost more code than this module,
and added transformers>=4.54 and jsonschema as dependencies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import inspect
import json
import re
import types
import typing
from typing import Any, Callable, Literal, Mapping, Union

# typing_extensions (a gymnasium and torch dependency) also recognises its own TypedDicts, which
# typing.is_typeddict does not, and has Required/NotRequired on Python 3.10.
import typing_extensions
from typing_extensions import is_typeddict

from tools.docstrings import parse_docstring

_NOT_REQUIRED = {typing_extensions.NotRequired, getattr(typing, "NotRequired", typing_extensions.NotRequired)}
_KEY_QUALIFIERS = _NOT_REQUIRED | {typing_extensions.Required, getattr(typing, "Required", typing_extensions.Required)}

SUPPORTED = (
    "str, int, float, bool, list[X], dict[str, X], Optional[X] (or X | None), Literal[...], "
    "a dataclass or a TypedDict"
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_MISSING = object()


class ToolArgumentError(ValueError):
    """Arguments that do not fit a tool's schema; `problems` lists each one (``"address.zip: ..."``)."""

    def __init__(self, tool: str, problems: list[str]):
        self.tool = tool
        self.problems = list(problems)
        n = len(self.problems)
        head = f"invalid arguments for tool '{tool}' ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head, *(f"- {p}" for p in self.problems)]))


# --------------------------------------------------------------------------------------------
# Type nodes: one tree per parameter, built once from the annotation, used both to write the
# JSON schema and to check arguments, so the two can never disagree.


class _Node:
    label = "value"  # how messages name the expected type

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, value: Any, path: str, problems: list[str]) -> Any:
        """Return the cleaned value; append a message to `problems` for each thing wrong."""
        raise NotImplementedError


_JSON_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean"}


class _Scalar(_Node):
    def __init__(self, py: type):
        self.py = py
        self.label = _JSON_NAMES[py]

    def schema(self) -> dict[str, Any]:
        return {"type": self.label}

    def check(self, value, path, problems):
        # bool is a subclass of int in Python but not an integer in JSON: `true` is never a count.
        if self.py is bool:
            good = isinstance(value, bool)
        elif self.py is int:
            good = isinstance(value, int) and not isinstance(value, bool)
        elif self.py is float:
            good = isinstance(value, (int, float)) and not isinstance(value, bool)
            if good:
                return float(value)  # JSON has one number type; 3 is a fine float
        else:
            good = isinstance(value, str)
        if not good:
            problems.append(f"{path}: expected {self.label}, got {_describe(value)}")
        return value


class _List(_Node):
    def __init__(self, item: _Node):
        self.item = item
        self.label = f"list of {item.label}"

    def schema(self):
        return {"type": "array", "items": self.item.schema()}

    def check(self, value, path, problems):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected {self.label}, got {_describe(value)}")
            return value
        return [self.item.check(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]


class _Dict(_Node):
    def __init__(self, value: _Node):
        self.value = value
        self.label = f"object of {value.label}"

    def schema(self):
        return {"type": "object", "additionalProperties": self.value.schema()}

    def check(self, value, path, problems):
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected {self.label}, got {_describe(value)}")
            return value
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                problems.append(f"{path}: keys must be strings, got {_describe(k)}")
                continue
            out[k] = self.value.check(v, _join(path, k), problems)
        return out


class _Optional(_Node):
    def __init__(self, inner: _Node):
        self.inner = inner
        self.label = f"{inner.label} or null"

    def schema(self):
        s = self.inner.schema()
        if isinstance(s.get("type"), str):
            s["type"] = [s["type"], "null"]
        if "enum" in s and None not in s["enum"]:
            s["enum"] = [*s["enum"], None]
        return s

    def check(self, value, path, problems):
        return None if value is None else self.inner.check(value, path, problems)


class _Literal(_Node):
    def __init__(self, values: tuple):
        self.values = values
        self.label = "one of " + ", ".join(json.dumps(v) for v in values)

    def schema(self):
        types = []
        for v in self.values:
            t = "null" if v is None else _JSON_NAMES[type(v)]
            if t not in types:
                types.append(t)
        return {"type": types[0] if len(types) == 1 else types, "enum": list(self.values)}

    def check(self, value, path, problems):
        # Compare type too: in Python True == 1, but `true` is not the enum value 1.
        if not any(type(value) is type(v) and value == v for v in self.values):
            problems.append(f"{path}: expected {self.label}, got {_describe(value)}")
        return value


@dataclass
class _Field:
    node: _Node
    required: bool
    default: Any = _MISSING  # a value shown in the schema; _MISSING when there is none to show
    description: str = ""
    fill_none: bool = False  # Optional without a default: pass None when the model omits it


class _Object(_Node):
    """A dataclass, a TypedDict, or a function's parameter list (`cls` None)."""

    def __init__(self, cls: type | None, fields: dict[str, _Field], description: str = ""):
        self.cls = cls
        self.fields = fields
        self.description = description
        self.label = cls.__name__ if cls is not None else "object"

    def schema(self):
        props = {}
        for name, f in self.fields.items():
            s = f.node.schema()
            if f.description:
                s["description"] = f.description
            if f.default is not _MISSING:
                s["default"] = f.default
            props[name] = s
        out: dict[str, Any] = {"type": "object"}
        if self.description:
            out["description"] = self.description
        out["properties"] = props
        out["required"] = [n for n, f in self.fields.items() if f.required]
        return out

    def check(self, value, path, problems):
        if self.cls is not None and dataclasses.is_dataclass(self.cls) and isinstance(value, self.cls):
            return value  # a Python caller passed the object itself
        if not isinstance(value, Mapping):
            expected = "an object" if self.cls is None else f"{self.label} (an object)"
            problems.append(f"{path or 'arguments'}: expected {expected}, got {_describe(value)}")
            return value
        before = len(problems)
        out = {}
        for key in value:
            if key not in self.fields:
                known = ", ".join(self.fields) or "none"
                what = "argument" if self.cls is None else "field"
                problems.append(f"{_join(path, str(key))}: unknown {what}; expected one of: {known}")
        for name, f in self.fields.items():
            if name in value:
                out[name] = f.node.check(value[name], _join(path, name), problems)
            elif f.required:
                problems.append(f"{_join(path, name)}: required but missing (expected {f.node.label})")
            elif f.fill_none:
                out[name] = None
        if len(problems) > before or self.cls is None or is_typeddict(self.cls):
            return out
        try:
            return self.cls(**out)
        except Exception as e:  # e.g. a __post_init__ that rejects the values
            problems.append(f"{path}: {type(e).__name__}: {e}")
            return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    """A value as the model would see it, with its JSON type: ``string "abc"``."""
    if value is None:
        kind = "null"
    elif isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, (list, tuple)):
        kind = "list"
    elif isinstance(value, Mapping):
        kind = "object"
    else:
        return type(value).__name__
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return f"{kind} {text[:57] + '...' if len(text) > 60 else text}"


# --------------------------------------------------------------------------------------------
# From annotations to nodes.


class _Unsupported(TypeError):
    """Raised deep in the type walk; `_build_params` adds the tool and parameter to the message."""


def _node(tp: Any, stack: tuple[type, ...]) -> tuple[_Node, str]:
    """The node for annotation `tp`, plus a description found in Annotated[..., "text"]."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        node, desc = _node(args[0], stack)
        text = next((m for m in tp.__metadata__ if isinstance(m, str)), "")
        return node, text or desc
    if origin in _KEY_QUALIFIERS:
        return _node(args[0], stack)
    if tp in _JSON_NAMES:
        return _Scalar(tp), ""
    if origin is Union or isinstance(tp, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == len(args) or len(rest) != 1:
            raise _Unsupported(f"union {_name(tp)} is not supported; only Optional[X] (X | None) is")
        inner, desc = _node(rest[0], stack)
        return _Optional(inner), desc
    if origin is Literal:
        bad = [v for v in args if v is not None and type(v) not in _JSON_NAMES]
        if bad:
            raise _Unsupported(f"Literal values must be str, int, float or bool, got {bad[0]!r}")
        values = tuple(v for v in args if v is not None)
        if not values:
            raise _Unsupported("Literal[None] is not supported; use Optional[...] of a real type")
        node: _Node = _Literal(values)
        return (_Optional(node) if None in args else node), ""
    if origin is list:
        if not args:
            raise _Unsupported("a bare list needs its item type, e.g. list[str]")
        return _List(_node(args[0], stack)[0]), ""
    if origin is dict:
        if len(args) != 2 or args[0] is not str:
            raise _Unsupported(f"{_name(tp)} is not supported; dicts need string keys: dict[str, X]")
        return _Dict(_node(args[1], stack)[0]), ""
    if tp is list or tp is dict:
        raise _Unsupported(f"a bare {tp.__name__} needs its item types, e.g. list[str] or dict[str, int]")
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or is_typeddict(tp)):
        if tp in stack:
            raise _Unsupported(f"{tp.__name__} refers to itself; recursive types are not supported")
        return _class_node(tp, (*stack, tp)), ""
    raise _Unsupported(f"{_name(tp)} is not supported")


def _name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _class_node(cls: type, stack: tuple[type, ...]) -> _Object:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as e:
        raise _Unsupported(f"the annotations of {cls.__name__} cannot be resolved ({e}); define the types at module level")
    doc = cls.__doc__ or ""
    if dataclasses.is_dataclass(cls) and doc.startswith(cls.__name__ + "("):
        doc = ""  # dataclasses write their signature as the docstring when there is none
    description, field_docs = parse_docstring(doc)
    fields: dict[str, _Field] = {}
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if not f.init:
                continue  # cannot be passed to the constructor
            default = f.default if f.default is not dataclasses.MISSING else _MISSING
            has_default = default is not _MISSING or f.default_factory is not dataclasses.MISSING
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            fields[f.name] = _make_field(f.name, hints[f.name], stack, has_default, default, field_docs)
    else:
        for name, tp in hints.items():
            # A NotRequired (or total=False) key the model omits stays absent, so it counts as defaulted.
            # The qualifier is read from the hint too: with string annotations (PEP 563) the class's
            # __required_keys__ can miss it.
            qualifier = typing.get_origin(tp)
            if qualifier in _KEY_QUALIFIERS:
                has_default = qualifier in _NOT_REQUIRED
            else:
                has_default = name not in cls.__required_keys__
            fields[name] = _make_field(name, tp, stack, has_default, _MISSING, field_docs)
    return _Object(cls, fields, description)


def _make_field(name: str, tp: Any, stack: tuple[type, ...], has_default: bool, default: Any, docs: dict[str, str]) -> _Field:
    if tp is inspect.Parameter.empty:
        raise _Unsupported("has no type annotation")
    try:
        node, annotated_doc = _node(tp, stack)
    except _Unsupported as e:
        # Nested fields prefix their own name, so the message reads "field 'geo': field 'lat': ..."
        raise _Unsupported(f"field '{name}': {e}" if stack else str(e)) from None
    optional = isinstance(node, _Optional)
    return _Field(
        node=node,
        required=not has_default and not optional,
        default=_json_default(default),
        description=docs.get(name) or annotated_doc,
        fill_none=optional and not has_default,
    )


def _json_default(value: Any) -> Any:
    """`value` as plain JSON for the schema's "default", or _MISSING when it has no JSON form."""
    if value is _MISSING:
        return _MISSING

    def plain(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return dataclasses.asdict(v)
        raise TypeError

    try:
        return json.loads(json.dumps(value, default=plain))
    except (TypeError, ValueError):
        return _MISSING  # the default still applies when the function runs; it is just not shown


def _build_params(fn: Callable, tool_name: str, docs: dict[str, str]) -> _Object:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:
        raise TypeError(
            f"tool '{tool_name}': cannot resolve its type hints ({e}); define the types it uses at module level"
        ) from None
    fields: dict[str, _Field] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool '{tool_name}': parameter '{p.name}' is *args/**kwargs; list each parameter by name")
        if p.kind is p.POSITIONAL_ONLY:
            raise TypeError(f"tool '{tool_name}': parameter '{p.name}' is positional-only; tools are called by keyword")
        tp = hints.get(p.name, inspect.Parameter.empty)
        has_default = p.default is not inspect.Parameter.empty
        try:
            fields[p.name] = _make_field(p.name, tp, (), has_default, p.default if has_default else _MISSING, docs)
        except _Unsupported as e:
            raise TypeError(
                f"tool '{tool_name}': parameter '{p.name}': {e}; supported annotations are {SUPPORTED}"
            ) from None
    return _Object(None, fields)
