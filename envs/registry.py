"""Environment registry: `register`, `make`, `list_envs`.

Every id registered here is also registered with Gymnasium as `groupwise/<id>`, so
`gymnasium.make("groupwise/sokoban")` works. Third-party packages add environments through the
`groupwise.envs` entry-point group: the entry point names either an `AgentEnv` subclass (registered
under the entry point's name) or a zero-argument function that calls `envs.register` itself.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Sequence

import gymnasium as gym

ENTRY_POINT_GROUP = "groupwise.envs"


class UnknownEnvError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass
class EnvSpec:
    id: str
    entry_point: str | Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: The `split` option value that holds the evaluation tasks, for envs whose tasks come in
    #: splits; None for envs whose tasks are seeds (evaluation then uses a reserved seed range).
    eval_split: str | None = None
    #: Labels `groupwise envs --tag` filters on (e.g. "miniwob", "real-time").
    tags: tuple[str, ...] = ()

    def load(self) -> Callable[..., Any]:
        if callable(self.entry_point):
            return self.entry_point
        module, _, attr = self.entry_point.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


_REGISTRY: dict[str, EnvSpec] = {}
_plugins_loaded = False


def register(id: str, entry_point: str | Callable[..., Any], description: str = "", eval_split: str | None = None,
             tags: Sequence[str] = (), **defaults: Any) -> None:
    """Register an environment under `id`.

    `entry_point` is a class / factory or a `"module:attr"` string (imported on first `make`).
    `defaults` are keyword arguments passed to it unless `make` overrides them. `eval_split` names
    the value of the env's `split` option that holds its evaluation tasks, if it has splits: the
    trainer and `groupwise eval` evaluate there, so training tasks never reach evaluation.
    `tags` are labels for `list_envs(tag=...)` and `groupwise envs --tag`.
    """
    if not id or "/" in id:
        raise ValueError(f"bad env id {id!r}: use a non-empty name without '/'")
    if isinstance(tags, str) or not all(isinstance(t, str) and t and " " not in t for t in tags):
        raise ValueError(f"tags of {id!r} must be a list of words (no spaces), got {tags!r}")
    _REGISTRY[id] = EnvSpec(id, entry_point, dict(defaults), description, eval_split, tuple(tags))
    gym_id = f"groupwise/{id}"
    # Gymnasium wants a creator callable or "module:attr"; route through make so defaults apply.
    gym.register(gym_id, entry_point=_gym_creator(id), disable_env_checker=True,
                 order_enforce=False)


def _gym_creator(id: str) -> Callable[..., Any]:
    def create(**kwargs: Any) -> Any:
        return make(id, **kwargs)

    create.__name__ = f"make_{id.replace('.', '_').replace('-', '_')}"
    return create


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break the built-in envs
            import warnings

            warnings.warn(f"groupwise: could not load env plugin {ep.name!r} ({ep.value}): {exc}")
            continue
        if inspect.isclass(obj):
            if ep.name not in _REGISTRY:
                register(ep.name, obj, description=(obj.__doc__ or "").strip().split("\n")[0])
        else:
            obj()


#: How close (difflib ratio, 0..1) a registered id must be to an unknown one to be suggested: a
#: typo or two ("sokobn", "click-buton"), not a different env that shares a prefix ("click-pie").
SUGGEST_CUTOFF = 0.85


def _close(name: str, candidates: list[str]) -> list[str]:
    by_lower = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=SUGGEST_CUTOFF)
    return [by_lower[c] for c in found]


def unknown_env_message(id: str) -> str:
    """What `make` says about an id that is not registered: close ids only, and for an id of a family
    (`miniwob.<task>`) whose family exists, that this member is not one of it, with the members."""
    known = sorted(_REGISTRY)
    family, dot, member = str(id).partition(".")
    members = sorted(k.partition(".")[2] for k in known if k.startswith(family + ".")) if dot else []
    if members:
        close = [f"{family}.{m}" for m in _close(member, members)]
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (f"unknown environment {id!r}: no {family} task {member!r} is registered.{hint} "
                f"The registered {family} tasks are: {', '.join(members)}.")
    close = _close(str(id), known)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    families = sorted({k.partition(".")[0] for k in known if "." in k})
    shown = [k for k in known if "." not in k] + [f"{f}.<task>" for f in families]
    return (f"unknown environment {id!r}.{hint} Known environments: {', '.join(shown)} "
            f"(`groupwise envs` lists every task). Register your own with envs.register(id, entry_point).")


def spec(id: str) -> EnvSpec:
    _load_plugins()
    if id not in _REGISTRY:
        raise UnknownEnvError(unknown_env_message(id))
    return _REGISTRY[id]


def make(id: str, **kwargs: Any) -> Any:
    """Build the environment registered as `id`; `kwargs` override its registered defaults."""
    return spec(id).load()(**check_options(id, kwargs))


def check_options(id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments `make(id, **kwargs)` passes (registered defaults, then `kwargs`),
    checked against the constructor's signature without building the env.

    `render_mode` (what `gymnasium.make` passes) reaches only envs whose constructor takes it:
    None is dropped for the others, and any other mode is refused with the modes the env renders.
    Raises TypeError naming unknown options and what the env accepts; an env class with a
    `validate_options(**options)` classmethod also has the values checked (ValueError).
    """
    s = spec(id)
    factory = s.load()
    params = {**s.defaults, **kwargs}
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return params
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return params
    if "render_mode" in params and "render_mode" not in sig.parameters:
        mode = params.pop("render_mode")
        if mode is not None:
            modes = (getattr(factory, "metadata", None) or {}).get("render_modes", [])
            raise ValueError(f"environment {id!r} does not render in mode {mode!r}: its render modes are "
                             f"{modes or 'none'}")
    unknown = [k for k in params if k not in sig.parameters]
    if unknown:
        accepted = [p for p in sig.parameters if p != "self"]
        raise TypeError(f"environment {id!r} got unknown option(s) {unknown}; it accepts: {', '.join(accepted) or 'none'}")
    validate = getattr(factory, "validate_options", None)
    if callable(validate):  # an env that can check its option values cheaply (a bad suite name, ...)
        validate(**params)
    return params


def list_envs(tag: str | Sequence[str] | None = None) -> dict[str, str]:
    """Registered ids mapped to their one-line descriptions; with `tag` (one or several), only the
    envs that carry every one of them. An unknown tag is a ValueError listing the known ones."""
    _load_plugins()
    wanted = [tag] if isinstance(tag, str) else list(tag or ())
    known = list_tags()
    for t in wanted:
        if t not in known:
            close = difflib.get_close_matches(str(t), list(known), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"no environment has the tag {t!r}.{hint} Tags: "
                             + ", ".join(f"{k} ({n})" for k, n in known.items()))
    return {k: _REGISTRY[k].description for k in sorted(_REGISTRY) if set(wanted) <= set(_REGISTRY[k].tags)}


def list_tags() -> dict[str, int]:
    """Every tag of a registered env, with how many envs carry it (most common first)."""
    _load_plugins()
    counts: dict[str, int] = {}
    for s in _REGISTRY.values():
        for t in s.tags:
            counts[t] = counts.get(t, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
