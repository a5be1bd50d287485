"""Named lists of MiniWoB++ tasks, as papers and the package's documentation use them.

`SUITES[name]` is a tuple of task names (all registered as `miniwob.<task>`); `suite(name)` is the
same with a clear error for an unknown name. A bench or training config plays a whole suite
through the `miniwob-suite` env: `env.id=miniwob-suite` with `env.kwargs={suite: liu2018}` (each
episode's seed picks the task, seed % len(suite), so consecutive seeds cover the suite evenly).

Where a list comes from is said next to it. Humphreys et al. 2022 (CC-Net) report results on
"104 MiniWob++ tasks" without naming them in any source we could check, so no suite claims to be
theirs.
"""

from __future__ import annotations

import difflib

from envs.miniwob.catalog import CATALOG
from envs.miniwob.tasks import SOLVED_TASKS


def _group(*groups: str) -> tuple[str, ...]:
    return tuple(name for name, task in CATALOG.items() if task.group in groups)


# Liu et al. 2018 (ICLR, "Reinforcement Learning on Web Interfaces using Workflow-Guided
# Exploration"): the tasks the MiniWoB++ site lists under "Tasks used in the paper": the original
# tasks that only need clicking and typing text from the prompt, the animated ones also in their
# no-delay copies, and the tasks MiniWoB++ added. (The paper's flight.Alaska is not registered.)
_LIU2018 = (
    "choose-list", "click-button", "click-button-sequence", "click-checkboxes", "click-color",
    "click-dialog", "click-dialog-2", "click-link", "click-option", "click-shades", "click-shape",
    "click-tab", "click-tab-2", "click-test", "click-test-2", "click-widget", "count-shape",
    "email-inbox", "enter-date", "enter-password", "enter-text", "enter-text-dynamic", "enter-time",
    "focus-text", "focus-text-2", "grid-coordinate", "guess-number", "identify-shape", "login-user",
    "navigate-tree", "search-engine", "social-media", "tic-tac-toe", "use-spinner",
    "book-flight", "choose-date", "click-collapsible", "click-collapsible-2", "click-pie", "use-autocomplete",
    "book-flight-nodelay", "choose-date-nodelay", "click-collapsible-2-nodelay", "click-collapsible-nodelay",
    "click-pie-nodelay", "use-autocomplete-nodelay",
) + _group("additional")

# Furuta et al. 2023 (WebGUM, "Multimodal Web Navigation with Instruction-Finetuned Foundation
# Models"): the 56 MiniWoB++ tasks of its evaluation, the set later LLM-agent papers compare on.
_WEBGUM = (
    "book-flight", "choose-date", "choose-date-easy", "choose-date-medium", "choose-list", "click-button",
    "click-button-sequence", "click-checkboxes", "click-checkboxes-large", "click-checkboxes-soft",
    "click-checkboxes-transfer", "click-collapsible", "click-collapsible-2", "click-color", "click-dialog",
    "click-dialog-2", "click-link", "click-menu", "click-option", "click-pie", "click-scroll-list",
    "click-shades", "click-shape", "click-tab", "click-tab-2", "click-tab-2-hard", "click-test",
    "click-test-2", "click-widget", "count-shape", "email-inbox", "email-inbox-forward-nl",
    "email-inbox-forward-nl-turk", "email-inbox-nl-turk", "enter-date", "enter-password", "enter-text",
    "enter-text-dynamic", "enter-time", "focus-text", "focus-text-2", "grid-coordinate", "guess-number",
    "identify-shape", "login-user", "login-user-popup", "multi-layouts", "multi-orderings", "navigate-tree",
    "search-engine", "social-media", "social-media-all", "social-media-some", "tic-tac-toe",
    "use-autocomplete", "use-spinner",
)

SUITES: dict[str, tuple[str, ...]] = {
    # Shi et al. 2017 (ICML, "World of Bits"): the 80 tasks of the OpenAI MiniWoB site (the
    # package docs' original tasks plus chase-circle, moving-items, simon-says) and the 20 the
    # paper lists that the site lacked (the docs' hidden-test tasks plus button-delay, hover-shape).
    "shi2017": _group("original", "excluded", "hidden-test"),
    # the OpenAI site's tasks as the package docs list them ("Original Tasks")
    "original": _group("original"),
    "liu2018": _LIU2018,
    "webgum": _WEBGUM,
    # the package's evaluation set: original, additional and hidden-test (no debug or no-delay
    # copies, none of the five timing tasks the package leaves unregistered)
    "eval": _group("original", "additional", "hidden-test"),
    # groupwise's own: the tasks with a scripted solver (SFT warm starts need one), and all of them
    "scripted": SOLVED_TASKS,
    "all": tuple(n for n, t in CATALOG.items() if t.group != "flight"),
    # FlightWoB: the airline sites, whose screenshots are 375x667 (a suite holds one size)
    "flight": _group("flight"),
}


def suite(name: str) -> tuple[str, ...]:
    """The tasks of suite `name`; an unknown name gets an error with close names and every suite."""
    try:
        return SUITES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(SUITES), n=2, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown MiniWoB suite {name!r}.{hint} Suites: "
                         + ", ".join(f"{k} ({len(v)} tasks)" for k, v in SUITES.items())) from None
