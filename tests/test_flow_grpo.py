"""Flow-GRPO against the worked example of algorithms.md §3.4."""

import numpy as np
import pytest

from algos import StepTable, compute_advantages


def _table():
    # query q: r1 (1 turn, R=1), r2 (2 turns, R=0), r3 (3 turns, R=1); query p: r4 (2 turns), r5 (1 turn), R=0
    trajs = [("q", "r1", [1]), ("q", "r2", [0, 0]), ("q", "r3", [0, 0, 1]), ("p", "r4", [0, 0]), ("p", "r5", [0])]
    rows = [(g, t, k, r) for g, t, rewards in trajs for k, r in enumerate(rewards)]
    g, t, k, r = zip(*rows)
    return StepTable(group=g, traj=t, turn=k, reward=r, anchor=[f"{a}{b}" for a, b in zip(t, k)])


def test_turn_pooled_matches_agentflow_code():
    adv = compute_advantages("flow_grpo", _table())
    np.testing.assert_allclose(adv, [0.6455, -1.2910, -1.2910, 0.6455, 0.6455, 0.6455, 0, 0, 0], atol=1e-4)


def test_trajectory_pooled_matches_the_paper():
    adv = compute_advantages("flow_grpo", _table(), pool="trajs")
    np.testing.assert_allclose(adv, [0.5773, -1.1547, -1.1547, 0.5773, 0.5773, 0.5773, 0, 0, 0], atol=1e-4)


def test_bad_pool_is_named():
    with pytest.raises(ValueError, match="flow_grpo: pool: 'steps' is not allowed; choose one of 'turns', 'trajs'"):
        compute_advantages("flow_grpo", _table(), pool="steps")
