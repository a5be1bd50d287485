"""`compute_advantages` with the settings of algorithms.md's worked examples.

The worked examples apply each estimator's formula as the papers write it: no invalid-action
penalty, REINFORCE++ without its group baseline, HGPO with K = 2. The registered defaults are the
command line's (the verl-agent scripts' penalty of 0.1, REINFORCE++-baseline, HGPO's K following
env.history_length), so these tests pass the paper settings explicitly; an option a test gives wins.
"""

from typing import Any

import numpy as np

import algos

PAPER: dict[str, dict[str, Any]] = {
    "grpo": {"invalid_penalty": 0.0},
    "gigpo": {"invalid_penalty": 0.0},
    "hgpo": {"history_length": 2, "invalid_penalty": 0.0},
    "rloo": {"invalid_penalty": 0.0},
    "dr_grpo": {"invalid_penalty": 0.0},
    "reinforce_pp": {"baseline": False, "invalid_penalty": 0.0},
}


def paper(name: str, **cfg: Any) -> dict[str, Any]:
    """The paper settings of estimator `name` with `cfg` over them."""
    return {**PAPER.get(name, {}), **cfg}


def compute_advantages(name: str, table: algos.StepTable, **cfg: Any) -> np.ndarray:
    return algos.compute_advantages(name, table, **paper(name, **cfg))


def compute_diagnostics(name: str, table: algos.StepTable, advantages: np.ndarray | None = None,
                        **cfg: Any) -> dict[str, float]:
    return algos.compute_diagnostics(name, table, advantages, **paper(name, **cfg))
