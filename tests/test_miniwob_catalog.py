"""The MiniWoB++ catalogue against the installed `miniwob` package, the suites, env tags and
`groupwise envs --tag`, the new action forms, and option errors. No browser runs here."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import envs
from envs.miniwob import CATALOG, SOLVED_TASKS, SUITES, TASKS, NoSolverError, suite
from envs.miniwob.actions import ActionError, parse_action

_SPEC = importlib.util.find_spec("miniwob")
PACKAGE = Path(list(_SPEC.submodule_search_locations)[0]) if _SPEC else None
needs_package = pytest.mark.skipif(PACKAGE is None, reason="needs the miniwob package (its task pages)")


@needs_package
def test_every_task_page_of_the_package_is_in_the_catalogue_with_the_page_s_time_limit():
    pages = {p.stem: p.read_text() for p in (PACKAGE / "html" / "miniwob").glob("*.html")}
    pages.update({f"flight.{p.parent.name}": p.read_text() for p in (PACKAGE / "html" / "flight").glob("*/wrapper.html")})
    assert set(pages) == set(CATALOG) and len(CATALOG) >= 125
    assert len([n for n in CATALOG if n.startswith("flight.")]) == 4
    for name, task in CATALOG.items():
        assert (PACKAGE / "html" / task.page).is_file(), name
        set_by_page = re.search(r"core\.EPISODE_MAX_TIME\s*=\s*(\d+)", pages[name])
        assert task.time_limit_ms == (int(set_by_page.group(1)) if set_by_page else 10_000), name


@needs_package
def test_the_excluded_group_is_what_the_package_leaves_out_of_its_own_registry():
    registered = set(re.findall(r'id="miniwob/([\w.-]+)-v1"', (PACKAGE / "registration.py").read_text()))
    assert registered <= set(CATALOG)  # FlightWoB included: the package registers 3 of its 4 sites
    assert set(CATALOG) - registered == {n for n, t in CATALOG.items() if t.group == "excluded"} | {
        "flight.Alaska-auto-medium"}


def test_groups_and_timing_as_the_package_docs_count_them():
    count = {g: sum(t.group == g for t in CATALOG.values()) for g in ("original", "nodelay", "additional",
                                                                       "debug", "hidden-test", "excluded", "flight")}
    assert count == {"original": 77, "nodelay": 6, "additional": 12, "debug": 12, "hidden-test": 18, "excluded": 5,
                     "flight": 4}
    real_time = {n for n, t in CATALOG.items() if t.timing == "real-time"}
    assert real_time == {"chase-circle", "moving-items", "simon-says", "button-delay", "hover-shape", "stock-market"}
    # every no-delay copy is static and the task it copies is not
    for name in (n for n, t in CATALOG.items() if t.group == "nodelay"):
        assert CATALOG[name].timing == "static" and CATALOG[name.replace("-nodelay", "")].timing == "animated"


def test_suites_hold_registered_tasks_and_an_unknown_suite_names_the_known_ones():
    sizes = {name: len(tasks) for name, tasks in SUITES.items()}
    assert sizes == {"shi2017": 100, "original": 77, "liu2018": 58, "webgum": 56, "eval": 107, "scripted": 23,
                     "all": len(CATALOG) - 4, "flight": 4}
    for tasks in SUITES.values():
        assert len(set(tasks)) == len(tasks) and set(tasks) <= set(CATALOG)
    assert set(SUITES["scripted"]) == set(SOLVED_TASKS) and "click-pie-nodelay" in SUITES["liu2018"]
    with pytest.raises(ValueError, match=r"unknown MiniWoB suite 'webgun'\. Did you mean 'webgum'\?.*liu2018 \(58 tasks\)"):
        suite("webgun")


def test_every_task_is_registered_and_tags_filter_them():
    ids = [i for i in envs.list_envs() if i.startswith("miniwob.")]
    assert len(ids) == len(CATALOG) >= 100
    assert set(envs.list_envs(tag=["miniwob", "real-time"])) == {f"miniwob.{n}" for n, t in CATALOG.items()
                                                                  if t.timing == "real-time"}
    assert set(envs.list_envs(tag="solver")) == {f"miniwob.{n}" for n in SOLVED_TASKS}
    assert len(envs.list_envs(tag="liu2018")) == 58 and "miniwob-suite" in envs.list_envs(tag="miniwob")
    assert envs.list_tags()["miniwob"] == len(CATALOG) + 1
    with pytest.raises(ValueError, match="no environment has the tag 'realtime'. Did you mean 'real-time'"):
        envs.list_envs(tag="realtime")


def test_groupwise_envs_lists_every_task_and_filters_by_tag(capsys):
    from algos.cli import main

    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("miniwob.") for line in out.splitlines()) >= 100 and "sokoban" in out
    assert main(["envs", "--tag", "miniwob", "--tag", "real-time"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(line.startswith("miniwob.") and "real-time" in line for line in lines)
    assert main(["envs", "--tags"]) == 0
    assert re.search(r"^webgum\s+56$", capsys.readouterr().out, re.M)
    with pytest.raises(SystemExit, match="Did you mean 'drag'"):
        main(["envs", "--tag", "dragg"])


def test_the_new_action_forms_parse_and_bad_ones_say_why():
    assert parse_action("move(10, 20)").kind == "move"
    d = parse_action("drag(1, 2, 30.5, 40)")
    assert (d.kind, d.x, d.y, d.x2, d.y2) == ("drag", 1.0, 2.0, 30.5, 40.0)
    assert parse_action("wait()").kind == "wait"
    assert parse_action('click(5, 6, "Shift")').modifiers == ("Shift",)
    assert parse_action('click("Item", "control+shift")').modifiers == ("Control", "Shift")
    for bad, why in [("drag(1, 2, 3)", "four numbers"), ("move(1)", "two numbers"), ("wait(500)", "takes nothing"),
                     ('click(1, 2, "Hyper")', "modifier keys are Shift, Control, Alt, Meta")]:
        with pytest.raises(ActionError, match=why):
            parse_action(bad)


@needs_package
def test_expert_action_without_a_solver_names_the_task_and_the_solved_ones():
    from envs.miniwob.env import MiniWoBEnv

    env = MiniWoBEnv("click-pie")  # no browser starts before reset
    with pytest.raises(NotImplementedError) as err:
        env.expert_action()
    assert isinstance(err.value, NoSolverError)
    assert "'click-pie' has no scripted solver" in str(err.value) and "click-button, " in str(err.value)
    assert TASKS["click-pie"].solver is None and TASKS["click-button"].solver is not None


@needs_package
@pytest.mark.parametrize("options, why", [
    ({"clock": "wall"}, "clock must be 'stepped'"),
    ({"step_ms": 0}, "step_ms must be an integer from 1 to 60000"),
    ({"time_limit": "yes"}, "time_limit must be true"),
    ({"max_steps": 0}, "max_steps must be a positive integer"),
    ({"data_mode": "eval"}, "data_mode must be one of default, train, test"),
    ({"suite": "liu2018"}, "give MiniWoBEnv a task or a suite, not both"),
    ({"task": None}, "needs a task"),
    ({"task": None, "suite": "webgun"}, "Did you mean 'webgum'"),
    ({"task": None, "suite": ["click-test", "click-pie-nodelya"]}, "Did you mean click-pie-nodelay"),
])
def test_bad_options_fail_before_a_browser_starts(options, why):
    from envs.miniwob.env import MiniWoBEnv

    with pytest.raises(ValueError, match=why):
        MiniWoBEnv(**{"task": "click-test", **options})


@needs_package
def test_max_steps_follow_the_time_limit_and_the_page_step():
    from envs.miniwob.env import MiniWoBEnv

    assert MiniWoBEnv("email-inbox").max_steps == 30  # 30 s at 1000 ms per action
    assert MiniWoBEnv("simon-says").max_steps == 60  # 15 s at its own 250 ms
    assert MiniWoBEnv("click-test", step_ms=500).max_steps == 20
    assert MiniWoBEnv("click-test", max_steps=4).max_steps == 4


@needs_package
def test_the_suite_bench_config_validates_and_a_bad_suite_fails_before_training(tmp_path):
    from algos.bench import load_bench, run_configs
    from algos.config import ConfigError, apply_overrides
    from algos.train_checks import check_config
    from algos.train_config import TrainConfig

    root = Path(__file__).resolve().parents[1]
    warm, runs = run_configs(load_bench(root / "benchmarks" / "configs" / "miniwob-scripted.yaml"), tmp_path)
    for cfg in [*warm.values(), *runs.values()]:
        check_config(cfg)
        assert cfg.env.id == "miniwob-suite" and cfg.env.options() == {"suite": "scripted"}
    bad = apply_overrides(TrainConfig(), ["env.id=miniwob-suite", "env.kwargs={suite: webgun}"])
    with pytest.raises(ConfigError, match="env.kwargs: unknown MiniWoB suite 'webgun'. Did you mean 'webgum'"):
        check_config(bad)
