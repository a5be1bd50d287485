"""MiniWoB++ tasks in Debian's Chromium (ids `miniwob.<task>`).

`tasks` (the task list and scripted solvers) imports no browser code, so registering the ids is
cheap; `env.MiniWoBEnv` and `browser.BrowserPool` pull in Playwright when used.
"""

from envs.miniwob.tasks import TASK_NAMES, TASKS, get_task

__all__ = ["TASK_NAMES", "TASKS", "get_task"]
