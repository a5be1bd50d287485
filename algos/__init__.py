"""groupwise algorithms: the StepTable batch, advantage estimators (registry) and policy losses.

    from algos import StepTable, compute_advantages
    adv = compute_advantages("gigpo", StepTable.from_records(steps), invalid_penalty=0.1)

Importing `algos` registers the built-in estimators; it imports numpy and torch only.
"""

# importing an estimator's module registers it under its name
from algos import a2tgpo as _a2tgpo  # noqa: F401
from algos import dr_grpo as _dr_grpo  # noqa: F401
from algos import flow_grpo as _flow_grpo  # noqa: F401
from algos import gae as _gae  # noqa: F401
from algos import gdpo as _gdpo  # noqa: F401
from algos import gigpo as _gigpo  # noqa: F401
from algos import grpo as _grpo  # noqa: F401
from algos import hgpo as _hgpo  # noqa: F401
from algos import igpo as _igpo  # noqa: F401
from algos import mc_grpo as _mc_grpo  # noqa: F401
from algos import reinforce_pp as _reinforce_pp  # noqa: F401
from algos import rloo as _rloo  # noqa: F401
from algos import salt as _salt  # noqa: F401
from algos.advantages import (
    advantage_diagnostics,
    discounted_returns,
    episode_advantages,
    episode_returns,
    group_normalize,
)
from algos.gigpo import gigpo_diagnostics, step_group_codes
from algos.losses import (
    AGG_MODES,
    agg_loss,
    entropy_from_logits,
    low_var_kl,
    masked_mean,
    ppo_clip_loss,
    ppo_clip_token_loss,
)
from algos.registry import (
    compute_advantages,
    compute_diagnostics,
    estimator,
    estimator_options,
    list_estimators,
    option,
    register_estimator,
)
from algos.steptable import StepTable

__all__ = [
    "AGG_MODES", "StepTable", "advantage_diagnostics", "agg_loss", "compute_advantages",
    "compute_diagnostics", "discounted_returns", "entropy_from_logits", "episode_advantages",
    "episode_returns", "estimator", "estimator_options", "gigpo_diagnostics", "group_normalize", "list_estimators",
    "low_var_kl", "masked_mean", "ppo_clip_loss", "ppo_clip_token_loss", "option", "register_estimator",
    "step_group_codes",
]
