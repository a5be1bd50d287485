"""Behaviour stays the same through refactors: a fixed 3-iteration run of every estimator
(tests/estimator_regression.py) gives the metrics recorded before the registry refactor, to 1e-6.

The refactor renamed the advantage statistics: the trainer now logs the registry's diagnostics
(`algos.advantages.advantage_diagnostics` plus the estimator's own) instead of a copy that always
added GiGPO's step-group sizes. `translate` maps the recorded names onto the new ones.
"""

import pytest

from tests.estimator_regression import ESTIMATORS, RECORD, differences, run_isolated

RENAMED = {"adv/adv_mean": "adv/mean", "adv/adv_std": "adv/std", "adv/adv_min": "adv/min",
           "adv/adv_max": "adv/max", "adv/adv_zero_share": "adv/zero_frac"}


def translate(recorded: dict[str, float], now: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """The recorded metrics under today's names, and today's metrics restricted to those names."""
    old: dict[str, float] = {}
    for key, value in recorded.items():
        if key == "adv/dropped_rows":  # now a share of the batch's rows
            old["adv/dropped_frac"] = value / now["batch/rows"] if now.get("batch/rows") else value
        elif key.startswith("adv/step_group_"):  # GiGPO's diagnostics, now logged by GiGPO alone
            if "step_group/count" in now:
                old["step_group/" + key.removeprefix("adv/step_group_")] = value
        else:
            old[RENAMED.get(key, key)] = value
    return old, {k: v for k, v in now.items() if k in old or not k.startswith(("adv/", "batch/", "group/",
                                                                                 "step_group/", "hgpo/", "ig/",
                                                                                 "probe/"))}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_three_iterations_match_the_recording(name):
    import json

    recorded = json.loads(RECORD.read_text())[name]
    now = run_isolated(name)  # in a fresh process
    pairs = [translate(r, n) for r, n in zip(recorded, now)]
    assert len(recorded) == len(now)
    assert differences([p[0] for p in pairs], [p[1] for p in pairs]) == []
