"""The MiniWoB action language: parse what an agent wrote, and write actions back out.

    click(x, y)             a mouse click at pixel (x, y) of the screenshot
    click("element text")   a mouse click at the centre of the visible element with that text
    click(x, y, "Shift")    a click with modifier keys held (Shift, Control, Alt, Meta; "Control+Shift")
    type("text")            type into the focused text field
    press("Key")            press a key or chord: Enter, Tab, Backspace, ArrowDown, Control+a
    scroll("down")          wheel over the page's scrollable element ("up" / "down")
    scroll(x, y, "down")    wheel at pixel (x, y)
    move(x, y)              move the mouse pointer to pixel (x, y) (hover)
    drag(x1, y1, x2, y2)    press the button at (x1, y1), move to (x2, y2), release
    wait()                  do nothing for one step while the page goes on (animations, timers)

Strings take double or single quotes; a quote or backslash inside is escaped with a backslash.
An action over `MAX_ACTION_CHARS` characters, or one that holds a lone surrogate (not a character,
so no browser can receive it), is refused before it is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envs.base import unencodable

#: Longest action text read at all; longer text is refused unread (and not echoed back in full).
MAX_ACTION_CHARS = 2000
FORMS = ('click(x, y)', 'click("element text")', 'type("text")', 'press("Enter")', 'scroll("down")',
         'scroll(x, y, "up")', 'move(x, y)', 'drag(x1, y1, x2, y2)', 'wait()')
MODIFIERS = ("Shift", "Control", "Alt", "Meta")


class ActionError(ValueError):
    """The action text is not one of the forms; the message says what was wrong and the right forms."""


@dataclass(frozen=True)
class Action:
    kind: str  # click_xy | click_text | type | press | scroll | move | drag | wait
    text: str = ""
    x: float = 0.0
    y: float = 0.0
    direction: str = ""
    at_point: bool = False  # scroll given a point
    x2: float = 0.0  # drag's end point
    y2: float = 0.0
    modifiers: tuple[str, ...] = ()  # keys held during a click


_STR = r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
_NUM = r"(-?\d+(?:\.\d+)?)"
_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.DOTALL | re.IGNORECASE)
_PATTERNS = {
    "click_xy": re.compile(rf"^\s*{_NUM}\s*,\s*{_NUM}\s*$"),
    "string": re.compile(rf"^\s*{_STR}\s*$", re.DOTALL),
    "scroll_xy": re.compile(rf"^\s*{_NUM}\s*,\s*{_NUM}\s*,\s*(?:{_STR}|(up|down))\s*$", re.IGNORECASE),
    "click_xy_mod": re.compile(rf"^\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_STR}\s*$", re.DOTALL),
    "click_text_mod": re.compile(rf"^\s*{_STR}\s*,\s*{_STR}\s*$", re.DOTALL),
    "drag": re.compile(rf"^\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*$"),
}


def quote(text: str) -> str:
    """`text` as a double-quoted action argument."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1], flags=re.DOTALL)


def parse_action(text: str) -> Action:
    """Parse one action; raise `ActionError` naming the problem and listing the valid forms."""
    forms = "; valid forms: " + ", ".join(FORMS)
    if not isinstance(text, str):
        raise ActionError(f"expected the action as text, got {type(text).__name__}{forms}")
    if len(text) > MAX_ACTION_CHARS:
        raise ActionError(f"the action is {len(text)} characters long; at most {MAX_ACTION_CHARS}{forms}")
    if problem := unencodable(text):
        raise ActionError(f"{problem}{forms}")
    m = _CALL.match(text)
    if not m:
        raise ActionError(f"cannot read {shorten(text)} as an action{forms}")
    name, args = m.group(1).lower(), m.group(2)
    if name == "click":
        if xy := _PATTERNS["click_xy"].match(args):
            return Action("click_xy", x=float(xy.group(1)), y=float(xy.group(2)))
        if s := _PATTERNS["string"].match(args):
            return Action("click_text", text=_unquote(s.group(1)))
        if m := _PATTERNS["click_xy_mod"].match(args):
            return Action("click_xy", x=float(m.group(1)), y=float(m.group(2)),
                          modifiers=_modifiers(_unquote(m.group(3)), forms))
        if m := _PATTERNS["click_text_mod"].match(args):
            return Action("click_text", text=_unquote(m.group(1)), modifiers=_modifiers(_unquote(m.group(2)), forms))
        raise ActionError(f"click takes two numbers or one quoted string (then optionally modifier keys "
                          f"such as \"Shift\"), got ({shorten(args, quoted=False)}){forms}")
    if name == "move":
        if xy := _PATTERNS["click_xy"].match(args):
            return Action("move", x=float(xy.group(1)), y=float(xy.group(2)))
        raise ActionError(f"move takes two numbers (a pixel x, y), got ({shorten(args, quoted=False)}){forms}")
    if name == "drag":
        if d := _PATTERNS["drag"].match(args):
            x1, y1, x2, y2 = map(float, d.groups())
            return Action("drag", x=x1, y=y1, x2=x2, y2=y2)
        raise ActionError(f"drag takes four numbers (from x1, y1 to x2, y2), got ({shorten(args, quoted=False)}){forms}")
    if name == "wait":
        if args.strip():
            raise ActionError(f"wait takes nothing (it waits one step), got ({shorten(args, quoted=False)}){forms}")
        return Action("wait")
    if name in ("type", "press"):
        s = _PATTERNS["string"].match(args)
        if not s:
            raise ActionError(f"{name} takes one quoted string, got ({shorten(args, quoted=False)}){forms}")
        value = _unquote(s.group(1))
        if name == "press" and not value.strip():
            raise ActionError(f"press needs a key name such as \"Enter\"{forms}")
        return Action(name, text=value)
    if name == "scroll":
        bare = args.strip().strip("\"'").lower()
        if bare in ("up", "down"):
            return Action("scroll", direction=bare)
        if p := _PATTERNS["scroll_xy"].match(args):
            direction = (_unquote(p.group(3)) if p.group(3) else p.group(4)).lower()
            if direction in ("up", "down"):
                return Action("scroll", x=float(p.group(1)), y=float(p.group(2)), direction=direction,
                              at_point=True)
        raise ActionError(f"scroll takes \"up\" or \"down\", optionally after a point x, y; got "
                          f"({shorten(args, quoted=False)}){forms}")
    raise ActionError(f"unknown action {shorten(name)}{forms}")


def _modifiers(text: str, forms: str) -> tuple[str, ...]:
    """"Control+Shift" -> ("Control", "Shift"); an unknown key name is an ActionError."""
    keys = tuple(k.strip() for k in text.split("+"))
    unknown = [k for k in keys if k.capitalize() not in MODIFIERS]
    if unknown:
        raise ActionError(f"a click's modifier keys are {', '.join(MODIFIERS)} (joined with +), got "
                          f"{shorten(text)}{forms}")
    return tuple(dict.fromkeys(k.capitalize() for k in keys))


def shorten(text: str, limit: int = 80, quoted: bool = True) -> str:
    """`text` for an error message, cut to about `limit` characters: repr'd, or with `quoted=False`
    as it is but with control characters escaped all the same."""
    shown = repr(text) if quoted else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shown if len(shown) <= limit else shown[:limit] + f"... ({len(text)} characters)"
