"""GAE over turns and the critic that feeds it."""

import numpy as np
import pytest
import torch

import algos.gae  # noqa: F401  (registers "gae")
from algos import StepTable, compute_advantages
from algos.gae import gae_advantages


def _table(value):
    # trajectory 0: two turns (rewards 0 then 1); trajectory 1: one turn (reward 0.5)
    return StepTable(group=[0, 0, 0], traj=[0, 0, 1], turn=[0, 1, 0], reward=[0.0, 1.0, 0.5],
                     anchor=["a", "b", "a"], value=value)


def test_gae_by_hand():
    t = _table([0.5, 0.8, 0.2])
    adv, ret = gae_advantages(t, gamma=0.9, lam=0.5)
    d0, d1 = 0.0 + 0.9 * 0.8 - 0.5, 1.0 - 0.8  # TD errors of trajectory 0; its last turn is terminal
    np.testing.assert_allclose(adv, [d0 + 0.45 * d1, d1, 0.5 - 0.2], atol=1e-12)
    np.testing.assert_allclose(ret, adv + [0.5, 0.8, 0.2], atol=1e-12)


def test_lambda_one_is_the_return_minus_the_value_and_lambda_zero_the_td_error():
    t = _table([0.5, 0.8, 0.2])
    adv1, ret1 = gae_advantages(t, gamma=1.0, lam=1.0)
    np.testing.assert_allclose(ret1, [1.0, 1.0, 0.5])  # Monte-Carlo returns, whatever the values
    adv0, _ = gae_advantages(t, gamma=1.0, lam=0.0)
    np.testing.assert_allclose(adv0, [0.8 - 0.5, 1.0 - 0.8, 0.5 - 0.2])


def test_rows_in_any_order_and_whitening():
    rng = np.random.RandomState(0)
    n_traj, T = 6, 5
    rows = [(g, g * 10 + i, k) for g in range(2) for i in range(3) for k in range(rng.randint(1, T))]
    g, tr, k = map(list, zip(*rows))
    reward, value = rng.randn(len(rows)), rng.randn(len(rows))
    t = StepTable(group=g, traj=tr, turn=k, reward=reward, anchor=[0] * len(rows), value=value)
    perm = rng.permutation(len(rows))
    tp = t.take(perm)
    np.testing.assert_allclose(gae_advantages(tp, 0.9, 0.8)[0], gae_advantages(t, 0.9, 0.8)[0][perm], atol=1e-12)
    w = compute_advantages("gae", t, gamma=0.9, lam=0.8)
    assert abs(w.mean()) < 1e-9 and abs(w.std() - 1) < 1e-6
    assert n_traj == t.n_trajs


def test_gae_without_values_says_where_they_come_from():
    t = StepTable(group=[0], traj=[0], turn=[0], reward=[1.0], anchor=["a"])
    with pytest.raises(ValueError, match="critic"):
        compute_advantages("gae", t)


def test_critic_values_ignore_padding_and_learn(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from algos.critic import Critic
    from algos.losses import value_loss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    critic = Critic(model, pad_id=0)
    # a zero head: every value starts at 0
    prompts = [[5, 6, 7, 8, 9], [5, 6], [7, 8, 9]]
    assert critic.values(prompts) == [0.0, 0.0, 0.0]
    torch.nn.init.normal_(critic.head.weight)
    batched = critic.values(prompts)
    alone = [critic.values([p])[0] for p in prompts]
    np.testing.assert_allclose(batched, alone, atol=1e-4)  # left padding changes nothing
    # the critic is a copy: training it leaves the policy untouched
    before = [p.detach().clone() for p in model.parameters()]
    torch.nn.init.zeros_(critic.head.weight)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    target = torch.tensor([1.0, -1.0, 0.5])
    first = None
    for _ in range(50):
        v = critic(prompts)
        loss, _ = value_loss(v, v.detach(), target, clip=None)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
