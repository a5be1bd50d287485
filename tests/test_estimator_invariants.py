"""Invariants every registered estimator must keep, checked on random batches.

The per-estimator worked examples live in test_advantages, test_flow_grpo, test_estimator_family,
test_igpo and test_gae; this file makes sure no estimator (including ones added later) depends on
row order or crashes on batches with every optional column filled.
"""

import numpy as np
import pytest

import algos
from algos import StepTable
from tests.paper_options import compute_advantages


def random_table(seed: int, n_groups: int = 3, group_size: int = 4, max_turns: int = 5) -> StepTable:
    rng = np.random.RandomState(seed)
    rows = []
    for g in range(n_groups):
        for i in range(group_size):
            for k in range(rng.randint(1, max_turns + 1)):
                rows.append((g, f"g{g}t{i}", k))
    n = len(rows)
    group, traj, turn = map(list, zip(*rows))
    return StepTable(
        group=group, traj=traj, turn=turn,
        reward=rng.choice([0.0, 0.0, 1.0, -0.1], size=n),
        anchor=[f"s{x}" for x in rng.randint(0, 4, size=n)],
        valid=rng.rand(n) > 0.1,
        action=[f"a{x}" for x in rng.randint(0, 3, size=n)],
        probe=rng.uniform(-3, -0.1, size=n),
        value=rng.randn(n),
        components=rng.rand(n, 2), component_names=("correct", "format"),
    )


@pytest.mark.parametrize("name", algos.list_estimators())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_order_does_not_matter(name, seed):
    table = random_table(seed)
    adv = compute_advantages(name, table)
    assert adv.shape == (len(table),)
    perm = np.random.RandomState(100 + seed).permutation(len(table))
    np.testing.assert_allclose(compute_advantages(name, table.take(perm)), adv[perm], atol=1e-9, equal_nan=True)
    finite = adv[~np.isnan(adv)]
    assert np.isfinite(finite).all() and len(finite) > 0


# Estimators whose advantages do not change when every reward of a group's trajectories is moved so
# that each trajectory's return moves by the same constant (the last reward of each trajectory).
GROUP_RELATIVE = ["grpo", "dr_grpo", "flow_grpo", "rloo", "mc_grpo", "salt"]


@pytest.mark.parametrize("name", GROUP_RELATIVE)
def test_shifting_a_groups_returns_leaves_advantages_unchanged(name):
    table = random_table(3)
    last = table.position == table.traj_lengths[table.traj_codes] - 1
    shifted = StepTable(group=table.group, traj=table.traj, turn=table.turn,
                        reward=table.reward + 7.5 * (last & (table.group_codes == 1)), anchor=table.anchor,
                        valid=table.valid, action=table.action)
    np.testing.assert_allclose(compute_advantages(name, shifted), compute_advantages(name, table), atol=1e-9,
                               equal_nan=True)
