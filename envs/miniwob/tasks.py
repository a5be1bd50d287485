"""The MiniWoB++ tasks groupwise registers (every page of the package, see catalog.py) and the
scripted solvers of 23 of them.

A solver reads only the page (the utterance and the visible elements, as an agent could) and
returns the next action; being stateless, it recovers from any state a noisy expert leaves behind.
The solved tasks span single clicks, typing, forms, multi-step navigation and scrolling, among
those whose outcome depends only on the seed; the other tasks have no solver, and
`MiniWoBEnv.expert_action()` says so (`NoSolverError`).

This module imports no browser code, so the registry can list the tasks cheaply.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

from envs.miniwob.actions import quote
from envs.miniwob.catalog import CATALOG, Task
from envs.miniwob.page import Element, PageState

Solver = Callable[[PageState, float], str]

__all__ = ["NoMove", "NoSolverError", "SOLVED_TASKS", "TASKS", "TASK_NAMES", "Task", "get_task"]


class NoMove(RuntimeError):
    """The solver finds nothing sensible to do on this page (it should not happen; says why)."""


# --------------------------------------------------------------------------------------------
# helpers


def _quoted(utterance: str) -> list[str]:
    return re.findall(r'"([^"]*)"', utterance)


def click(el: Element, state: PageState, scale: float) -> str:
    """click("text") when the text names this element unambiguously, else click at its centre."""
    if el.text and state.find_text(el.text) is el and len(el.text) <= 40:
        return f"click({quote(el.text)})"
    return f"click({round(el.x * scale)}, {round(el.y * scale)})"


def _one(state: PageState, what: str, pred: Callable[[Element], bool]) -> Element:
    for el in state.elements:
        if pred(el):
            return el
    raise NoMove(f"no visible {what} on the page for task {state.utterance!r}")


def _button(state: PageState, text: str) -> Element:
    return _one(state, f"button {text!r}", lambda e: e.tag in ("button", "input") and e.text.lower() == text.lower())


def _fill(state: PageState, scale: float, fields: list[tuple[Element, str]], submit: str) -> str:
    """Fill text fields in order (click, type, delete a wrong tail), then click `submit`."""
    for el, want in fields:
        if el.value == want:
            continue
        if not el.focused:
            return click(el, state, scale)
        if want.startswith(el.value):
            return f"type({quote(want[len(el.value):])})"
        return 'press("Backspace")'
    return click(_button(state, submit), state, scale)


def _inputs(state: PageState) -> list[Element]:
    return [e for e in state.elements if e.tag == "input" and e.type in ("text", "password", "")]


# --------------------------------------------------------------------------------------------
# solvers


def solve_click_button(s: PageState, k: float) -> str:
    return click(_button(s, _quoted(s.utterance)[0]), s, k)


def solve_click_link(s: PageState, k: float) -> str:
    target = _quoted(s.utterance)[-1]
    return click(_one(s, f"link {target!r}", lambda e: "alink" in e.cls and e.text == target), s, k)


def _close_button(s: PageState) -> Element:
    return _one(s, "dialog close button", lambda e: "ui-dialog-titlebar-close" in e.cls)


def solve_click_dialog(s: PageState, k: float) -> str:
    return click(_close_button(s), s, k)


def solve_click_dialog_2(s: PageState, k: float) -> str:
    target = _quoted(s.utterance)[0]
    return click(_close_button(s) if target == "x" else _button(s, target), s, k)


def solve_click_tab(s: PageState, k: float) -> str:
    tab = re.search(r"Tab #\d", s.utterance).group(0)
    return click(_one(s, tab, lambda e: e.tag == "a" and e.text == tab), s, k)


def solve_click_test(s: PageState, k: float) -> str:
    return click(_button(s, "Click Me!"), s, k)


def solve_click_test_2(s: PageState, k: float) -> str:
    return click(_button(s, "ONE"), s, k)


def solve_click_button_sequence(s: PageState, k: float) -> str:
    one = _button(s, "ONE")
    return click(one if not one.tampered else _button(s, "TWO"), s, k)


def solve_click_widget(s: PageState, k: float) -> str:
    kind = _quoted(s.utterance)[0]
    return click(_one(s, f"{kind} widget", lambda e: e.datatype == kind), s, k)


def solve_focus_text(s: PageState, k: float) -> str:
    return click(_inputs(s)[0], s, k)


def solve_focus_text_2(s: PageState, k: float) -> str:
    nth = {"1st": 0, "2nd": 1, "3rd": 2}[re.search(r"(1st|2nd|3rd)", s.utterance).group(1)]
    return click(sorted(_inputs(s), key=lambda e: e.id)[nth], s, k)


def solve_identify_shape(s: PageState, k: float) -> str:
    shape = next((sh for sh in s.shapes if sh["tag"] in ("text", "circle", "rect", "polygon")), None)
    if shape is None:
        raise NoMove("identify-shape: no shape drawn")
    if shape["tag"] == "text":
        answer = "Number" if shape["text"].isdigit() else "Letter"
    else:
        answer = {"circle": "Circle", "rect": "Rectangle", "polygon": "Triangle"}[shape["tag"]]
    return click(_button(s, answer), s, k)


def solve_enter_text(s: PageState, k: float) -> str:
    return _fill(s, k, [(_inputs(s)[0], _quoted(s.utterance)[0])], "Submit")


def solve_enter_text_2(s: PageState, k: float) -> str:
    word = _quoted(s.utterance)[0]
    want = word.upper() if "upper case" in s.utterance else word.lower()
    return _fill(s, k, [(_inputs(s)[0], want)], "Submit")


def solve_enter_password(s: PageState, k: float) -> str:
    password = _quoted(s.utterance)[0]
    return _fill(s, k, [(el, password) for el in _inputs(s)], "Submit")


def solve_login_user(s: PageState, k: float) -> str:
    user, password = _quoted(s.utterance)[:2]
    fields = {e.id: e for e in _inputs(s)}
    return _fill(s, k, [(fields["username"], user), (fields["password"], password)], "Login")


def _wanted_names(utterance: str) -> set[str]:
    m = re.match(r"Select (.*) and click Submit", utterance)
    names = m.group(1) if m else ""
    return set() if names == "nothing" else {n.strip() for n in names.split(",") if n.strip()}


def _choices(s: PageState, kind: str) -> list[tuple[Element, Element]]:
    """(label, its input) pairs of checkboxes or radio buttons, in page order."""
    labels = [e for e in s.elements if e.tag == "label" and e.text]
    boxes = [e for e in s.elements if e.tag == "input" and e.type == kind]
    return list(zip(labels, boxes))


def solve_click_checkboxes(s: PageState, k: float) -> str:
    wanted = _wanted_names(s.utterance)
    for label, box in _choices(s, "checkbox"):
        if box.checked != (label.text in wanted):
            return click(label, s, k)
    return click(_button(s, "Submit"), s, k)


def solve_click_option(s: PageState, k: float) -> str:
    wanted = _wanted_names(s.utterance)
    for label, box in _choices(s, "radio"):
        if label.text in wanted and not box.checked:
            return click(label, s, k)
    return click(_button(s, "Submit"), s, k)


def solve_click_tab_2(s: PageState, k: float) -> str:
    target = _quoted(s.utterance)[-1]
    link = next((e for e in s.elements if "alink" in e.cls and e.text == target), None)
    if link is not None:
        return click(link, s, k)
    tabs = [e for e in s.elements if e.tag == "a" and e.text.startswith("Tab #")]
    unseen = [t for t in tabs if "ui-tabs-active" not in t.pcls and not t.tampered]
    if not unseen:
        raise NoMove(f"click-tab-2: link {target!r} is in no tab")
    return click(unseen[0], s, k)


def solve_click_collapsible(s: PageState, k: float) -> str:
    header = _one(s, "section header", lambda e: e.tag == "h3")
    if "ui-state-active" not in header.cls:
        return click(header, s, k)
    return click(_button(s, "Submit"), s, k)


def solve_navigate_tree(s: PageState, k: float) -> str:
    target = _quoted(s.utterance)[-1]
    found = next((e for e in s.elements if e.tag == "span" and e.text == target), None)
    if found is not None:
        return click(found, s, k)
    closed = [e for e in s.elements if e.tag == "span" and "folder" in e.cls and "expandable" in e.pcls]
    if not closed:
        raise NoMove(f"navigate-tree: {target!r} is in no folder left to open")
    return click(closed[0], s, k)


def solve_scroll_text_2(s: PageState, k: float) -> str:
    area = _one(s, "scrollable text area", lambda e: e.scroll is not None)
    top, bottom = area.scroll
    at = f"{round(area.x * k)}, {round(area.y * k)}"
    if "bottom" in s.utterance and top < bottom - 5:
        return f'scroll({at}, "down")'
    if "top" in s.utterance and top > 5:
        return f'scroll({at}, "up")'
    return click(_button(s, "Submit"), s, k)


#: The scripted solvers, by task name.
SOLVERS: dict[str, Solver] = {
    "click-button": solve_click_button,
    "click-link": solve_click_link,
    "click-dialog": solve_click_dialog,
    "click-dialog-2": solve_click_dialog_2,
    "click-tab": solve_click_tab,
    "click-test": solve_click_test,
    "click-test-2": solve_click_test_2,
    "click-widget": solve_click_widget,
    "focus-text": solve_focus_text,
    "focus-text-2": solve_focus_text_2,
    "identify-shape": solve_identify_shape,
    "enter-text": solve_enter_text,
    "enter-text-2": solve_enter_text_2,
    "enter-text-dynamic": solve_enter_text,
    "enter-password": solve_enter_password,
    "login-user": solve_login_user,
    "click-checkboxes": solve_click_checkboxes,
    "click-option": solve_click_option,
    "click-button-sequence": solve_click_button_sequence,
    "click-tab-2": solve_click_tab_2,
    "click-collapsible-nodelay": solve_click_collapsible,
    "navigate-tree": solve_navigate_tree,
    "scroll-text-2": solve_scroll_text_2,
}

#: Every task of the catalogue, with its solver where there is one.
TASKS: dict[str, Task] = {name: dataclasses.replace(t, solver=SOLVERS.get(name)) for name, t in CATALOG.items()}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
#: The tasks with a scripted solver.
SOLVED_TASKS: tuple[str, ...] = tuple(name for name in TASK_NAMES if TASKS[name].solver is not None)


class NoSolverError(NotImplementedError):
    """`expert_action()` on a task without a scripted solver (NotImplementedError: "no expert here")."""

    def __init__(self, task: str):
        super().__init__(f"MiniWoB task {task!r} has no scripted solver, so expert_action() has no move to "
                         f"give. Tasks with solvers ({len(SOLVED_TASKS)}): {', '.join(SOLVED_TASKS)}; "
                         f"or use another policy (random, a model) on {task!r}.")


def get_task(name: str) -> Task:
    """The task called `name`; an unknown name gets an error listing valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        import difflib

        from envs.registry import SUGGEST_CUTOFF

        close = difflib.get_close_matches(str(name), TASK_NAMES, n=3, cutoff=SUGGEST_CUTOFF)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown MiniWoB task {name!r}.{hint} Registered tasks: {', '.join(TASK_NAMES)}") from None
