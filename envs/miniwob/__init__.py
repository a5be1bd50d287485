"""MiniWoB++ tasks in Debian's Chromium (ids `miniwob.<task>`, and `miniwob-suite` for a suite).

`tasks`, `catalog` and `suites` import no browser code, so registering the ids is cheap;
`env.MiniWoBEnv` and `browser.BrowserPool` pull in Playwright when used.
"""

from envs.miniwob.catalog import CATALOG
from envs.miniwob.suites import SUITES, suite
from envs.miniwob.tasks import SOLVED_TASKS, TASK_NAMES, TASKS, NoSolverError, get_task

__all__ = ["CATALOG", "NoSolverError", "SOLVED_TASKS", "SUITES", "TASKS", "TASK_NAMES", "get_task", "register_all",
           "suite"]


#: Suites whose names also tag their tasks (`groupwise envs --tag liu2018`); "original" is a group
#: tag already, "scripted" is the "solver" tag, and "all" would tag everything.
_SUITE_TAGS = ("shi2017", "liu2018", "webgum", "eval")


def register_all() -> None:
    """Register `miniwob.<task>` for every task page of the package, and `miniwob-suite`."""
    from envs.registry import register

    in_suites = {name: tuple(k for k in _SUITE_TAGS if name in SUITES[k]) for name in TASKS}
    for name, task in TASKS.items():
        timing = "" if task.timing == "static" else f", {task.timing} (stepped clock by default)"
        solver = ", scripted solver" if task.solver else ""
        group = "FlightWoB: an airline's search form in a 375x667 iframe" if task.group == "flight" else task.group
        register(f"miniwob.{name}", "envs.miniwob.env:MiniWoBEnv", task=name, tags=task.tags + in_suites[name],
                 description=f"MiniWoB++ {name} in Chromium: {task.kind}, {task.time_limit_ms // 1000} s limit, "
                             f"{group}{timing}{solver}.")
    register("miniwob-suite", "envs.miniwob.env:MiniWoBEnv", task=None, suite="scripted", tags=("miniwob", "suite"),
             description="A MiniWoB++ suite in Chromium, the task picked by the seed: suite=" + "|".join(SUITES)
                         + " or a list of tasks.")
