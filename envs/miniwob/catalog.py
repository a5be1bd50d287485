"""Every MiniWoB++ task page the `miniwob` package ships, with what groupwise needs to know of each.

One row per task page the package ships: the 130 pages of `miniwob/html/miniwob/` and the four
FlightWoB sites of `miniwob/html/flight/` (miniwob 1.1.0):

- group: how the package's documentation sorts the task. "original" (Shi et al. 2017's MiniWoB
  tasks from the OpenAI site), "nodelay" (MiniWoB++ copies of animated tasks without the
  animation), "additional" (harder or new tasks added by Liu et al. 2018), "debug" (easier
  versions), "hidden-test" (Shi et al.'s test tasks that were not on the OpenAI site), "excluded"
  (the five tasks the package leaves out of its registry because they need waiting for events) and
  "flight" (FlightWoB: copies of real airline search forms, Liu et al. 2018).
- kind: the interaction the task asks for: click, type, form, multi-step, scroll, widget (date
  picker, autocomplete, spinner, drop-down), canvas (click a point of a drawing), drag, hover.
- limit: the task's own time limit in seconds, as its page sets `core.EPISODE_MAX_TIME` (10 s when
  it does not); tests/test_miniwob_catalog.py checks every row against the installed pages, and
  the env reads the limit from the loaded page itself.
- timing: "static" (nothing changes without input), "animated" (UI effects or delays: fades,
  slides, autocomplete and sub-menu delays, a pie menu's spin, a blinking cursor, a cube's
  inertia) or "real-time" (the task itself runs on the clock: moving targets, a blinking
  sequence, price ticks, waits of a given length). See env.py for how each runs headless.
- step: page milliseconds one action takes under the stepped clock, where the task needs other
  than the env's default (simon-says blinks for 250 ms, which a 1 s step would skip).

hover-shape's page computes a score but never reports it (its call to the scorer is commented out
in the package), so every episode of it ends at the time limit with reward -1.

FlightWoB (`flight.<site>`) differs from the rest: the airline page runs in a 375x667 iframe of a
wrapper page that holds the query and the scorer, which reads the submitted form and scores the
share of fields that match (-1 when a required field is empty). The parent reaches into the
iframe, so the pages need one HTTP origin (env.py serves them on a made-up one from the package,
through the browser's request routing: no server, no socket). The package registers three of
the four sites (not Alaska-auto-medium, a variant with fewer fields); all four are here.

This module imports no browser code, so the registry lists the tasks cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

GROUPS = ("original", "nodelay", "additional", "debug", "hidden-test", "excluded", "flight")
KINDS = ("click", "type", "form", "multi-step", "scroll", "widget", "canvas", "drag", "hover")
TIMINGS = ("static", "animated", "real-time")

# name                          group        kind        limit  timing     step
_TABLE = """
ascending-numbers               hidden-test  click       10     static
bisect-angle                    original     canvas      10     static
book-flight                     original     form        30     animated
book-flight-nodelay             nodelay      form        30     static
button-delay                    excluded     click       10     real-time
buy-ticket                      hidden-test  multi-step  10     static
chase-circle                    excluded     hover       10     real-time
choose-date                     original     widget      20     animated
choose-date-easy                debug        widget      20     animated
choose-date-medium              debug        widget      20     animated
choose-date-nodelay             nodelay      widget      20     static
choose-list                     original     widget      10     static
circle-center                   original     canvas      10     static
click-button                    original     click       10     static
click-button-sequence           original     multi-step  10     static
click-checkboxes                original     form        10     static
click-checkboxes-large          additional   form        20     static
click-checkboxes-soft           additional   form        10     static
click-checkboxes-transfer       additional   form        10     static
click-collapsible               original     multi-step  10     animated
click-collapsible-2             original     multi-step  10     animated
click-collapsible-2-nodelay     nodelay      multi-step  10     static
click-collapsible-nodelay       nodelay      multi-step  10     static
click-color                     original     click       10     static
click-dialog                    original     click       10     static
click-dialog-2                  original     click       10     static
click-link                      original     click       10     static
click-menu                      original     hover       10     animated
click-menu-2                    original     hover       10     animated
click-option                    original     form        10     static
click-pie                       original     click       10     animated
click-pie-nodelay               nodelay      click       10     static
click-scroll-list               original     scroll      15     static
click-shades                    original     click       15     static
click-shape                     original     click       10     static
click-tab                       original     click       10     static
click-tab-2                     original     multi-step  10     static
click-tab-2-easy                debug        multi-step  10     static
click-tab-2-hard                additional   multi-step  20     static
click-tab-2-medium              debug        multi-step  10     static
click-test                      original     click       10     static
click-test-2                    original     click       10     static
click-test-transfer             debug        click       10     static
click-widget                    original     click       10     static
copy-paste                      original     type        10     static
copy-paste-2                    original     type        10     static
count-shape                     original     click       10     static
count-sides                     original     click       10     static
daily-calendar                  hidden-test  drag        20     static
drag-box                        original     drag        10     static
drag-circle                     original     drag        10     static
drag-cube                       original     drag        15     animated
drag-items                      original     drag        10     static
drag-items-grid                 original     drag        10     static
drag-shapes                     original     drag        15     static
drag-shapes-2                   hidden-test  drag        30     static
drag-single-shape               hidden-test  drag        10     static
drag-sort-numbers               original     drag        10     static
draw-circle                     hidden-test  drag        10     static
draw-line                       hidden-test  drag        10     static
email-inbox                     original     multi-step  30     static
email-inbox-delete              debug        multi-step  30     static
email-inbox-forward             debug        multi-step  30     static
email-inbox-forward-nl          additional   multi-step  30     static
email-inbox-forward-nl-turk     additional   multi-step  30     static
email-inbox-important           debug        multi-step  30     static
email-inbox-nl-turk             additional   multi-step  30     static
email-inbox-noscroll            debug        multi-step  30     static
email-inbox-reply               debug        multi-step  30     static
email-inbox-star-reply          debug        multi-step  30     static
enter-date                      original     type        20     static
enter-password                  original     form        15     static
enter-text                      original     type        10     static
enter-text-2                    original     type        10     static
enter-text-dynamic              original     type        10     static
enter-time                      original     type        20     static
find-greatest                   hidden-test  click       10     static
find-midpoint                   original     canvas      10     static
find-word                       original     type        10     static
focus-text                      original     click       10     static
focus-text-2                    original     click       10     static
form-sequence                   hidden-test  form        10     static
form-sequence-2                 hidden-test  form        10     static
form-sequence-3                 hidden-test  form        10     static
generate-number                 hidden-test  click       15     static
grid-coordinate                 original     canvas      10     static
guess-number                    original     type        15     static
highlight-text                  original     drag        10     static
highlight-text-2                original     drag        10     static
hot-cold                        hidden-test  hover       15     static
hover-shape                     excluded     hover       10     real-time
identify-shape                  original     click       10     static
login-user                      original     form        10     static
login-user-popup                additional   form        15     static
moving-items                    excluded     click       10     real-time
multi-layouts                   additional   form        20     static
multi-orderings                 additional   form        20     static
navigate-tree                   original     multi-step  10     static
number-checkboxes               original     click       30     static
odd-or-even                     hidden-test  click       15     static
order-food                      hidden-test  multi-step  20     static
phone-book                      hidden-test  multi-step  15     static
read-table                      original     type        10     static
read-table-2                    original     type        20     static
resize-textarea                 original     drag        10     static
right-angle                     original     canvas      10     static
scroll-text                     original     scroll      10     static
scroll-text-2                   original     scroll      10     static
search-engine                   original     multi-step  20     static
sign-agreement                  hidden-test  scroll      10     static
simon-says                      excluded     click       15     real-time  250
simple-algebra                  original     type        10     static
simple-arithmetic               original     type        10     static
social-media                    original     click       15     static
social-media-all                additional   click       20     static
social-media-some               additional   click       20     static
stock-market                    hidden-test  click       10     real-time
terminal                        original     type        20     animated
text-editor                     original     drag        15     static
text-transform                  original     type        15     static
tic-tac-toe                     original     click       10     static
unicode-test                    debug        click       10     static
use-autocomplete                original     widget      10     animated
use-autocomplete-nodelay        nodelay      widget      10     static
use-colorwheel                  original     canvas       7     static
use-colorwheel-2                original     canvas       7     static
use-slider                      original     drag        10     static
use-slider-2                    original     drag        20     static
use-spinner                     original     widget      10     static
visual-addition                 original     type        15     static
"""

#: A solver reads the page state (and the screenshot scale) and returns the next action text.
Solver = Callable[..., str]


#: FlightWoB's sites (miniwob/html/flight/<site>/wrapper.html), each with a 60 s limit.
FLIGHT_SITES = ("AA", "Alaska", "Alaska-auto", "Alaska-auto-medium")
#: (width, height) of the task area in CSS pixels: what the screenshot shows and clicks may reach
TASK_AREA = (160, 210)
FLIGHT_AREA = (375, 667)  # the airline page's iframe


@dataclass(frozen=True)
class Task:
    """One MiniWoB++ task page and what groupwise knows of it (see the module docstring)."""

    name: str
    group: str
    kind: str
    time_limit_ms: int
    timing: str = "static"
    #: page milliseconds per action under the stepped clock; None = the env's `step_ms`
    step_ms: int | None = None
    #: scripted solver (envs.miniwob.tasks), None where there is none
    solver: Solver | None = None
    #: the page, relative to the package's html/ folder
    page: str = ""
    area: tuple[int, int] = TASK_AREA

    @property
    def served(self) -> bool:
        """Whether the page needs an HTTP origin (its wrapper reaches into an iframe) rather than file://."""
        return self.group == "flight"

    @property
    def tags(self) -> tuple[str, ...]:
        """What `groupwise envs --tag` filters on: the family, group, kind, timing, and `solver`."""
        return ("miniwob", self.group, self.kind, self.timing) + (("solver",) if self.solver else ())


def _parse(table: str) -> dict[str, Task]:
    tasks = {}
    for line in table.strip().splitlines():
        name, group, kind, limit, timing, *step = line.split()
        assert group in GROUPS and kind in KINDS and timing in TIMINGS, line
        tasks[name] = Task(name, group, kind, int(limit) * 1000, timing, int(step[0]) if step else None,
                           page=f"miniwob/{name}.html")
    return tasks


def _flight(site: str) -> Task:
    return Task(f"flight.{site}", "flight", "form", 60_000, page=f"flight/{site}/wrapper.html", area=FLIGHT_AREA)


CATALOG: dict[str, Task] = {**_parse(_TABLE), **{f"flight.{s}": _flight(s) for s in FLIGHT_SITES}}
