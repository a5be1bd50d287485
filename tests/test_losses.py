"""Policy-loss primitives against the worked examples of algorithms.md §0.4 - §0.6."""

from __future__ import annotations

import math

import pytest
import torch

from algos import agg_loss, entropy_from_logits, low_var_kl, ppo_clip_loss, ppo_clip_token_loss

# ------------------------------------------------------------------------------------------------
# §0.4 aggregation modes

LOSS = torch.tensor([[1.0, 1, 1, 1], [4, 0, 0, 0]])
MASK = torch.tensor([[1.0, 1, 1, 1], [1, 0, 0, 0]])


@pytest.mark.parametrize("mode, expected", [
    ("token-mean", 1.6),
    ("seq-mean-token-sum", 4.0),
    ("seq-mean-token-mean", 2.5),
    ("seq-mean-token-sum-norm", 1.0),  # default C = B * L_max = 2 * 4
])
def test_agg_modes_sec04(mode, expected):
    assert agg_loss(LOSS, MASK, mode).item() == pytest.approx(expected)


def test_agg_token_sum_norm_constant():
    assert agg_loss(LOSS, MASK, "seq-mean-token-sum-norm", const=4).item() == pytest.approx(2.0)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_agg_excludes_all_zero_mask_rows(mode):
    loss = torch.cat([LOSS, torch.full((1, 4), 7.0)])
    mask = torch.cat([MASK, torch.zeros(1, 4)])
    assert agg_loss(loss, mask, mode).item() == pytest.approx(agg_loss(LOSS, MASK, mode).item())


def test_agg_bool_mask_empty_mask_and_errors():
    assert agg_loss(LOSS, MASK.bool(), "token-mean").item() == pytest.approx(1.6)
    for mode in ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        assert agg_loss(LOSS, torch.zeros_like(MASK), mode).item() == 0.0
    with pytest.raises(ValueError, match="token-mean"):
        agg_loss(LOSS, MASK, "sequence-mean")
    with pytest.raises(ValueError, match="shape"):
        agg_loss(LOSS, MASK[:, :2], "token-mean")


# ------------------------------------------------------------------------------------------------
# §0.5 PPO clip

RHO = torch.tensor([1.5, 0.7, 1.25, 1.0])


def token_loss(rho, adv, clip_low=0.2, clip_high=0.2, c=3.0):
    loss, *_ = ppo_clip_token_loss(torch.log(rho), torch.full_like(rho, adv), clip_low, clip_high, c)
    return loss.tolist()


def test_ppo_clip_positive_advantage_sec05():
    assert token_loss(RHO, +1.0) == pytest.approx([-1.2, -0.7, -1.2, -1.0])
    assert token_loss(RHO, +1.0, 0.2, 0.28) == pytest.approx([-1.28, -0.7, -1.25, -1.0])  # clip-higher


def test_ppo_clip_negative_advantage_sec05():
    assert token_loss(RHO, -1.0) == pytest.approx([1.5, 0.8, 1.25, 1.0])
    assert token_loss(RHO, -1.0, 0.2, 0.28) == pytest.approx([1.5, 0.8, 1.25, 1.0])


def test_dual_clip_sec05():
    assert token_loss(torch.tensor([5.0]), -1.0) == pytest.approx([3.0])
    assert token_loss(torch.tensor([5.0]), -1.0, c=None) == pytest.approx([5.0])  # disabled
    assert token_loss(torch.tensor([5.0]), +1.0) == pytest.approx([-1.2])  # only where A < 0
    with pytest.raises(ValueError, match="clip_ratio_c"):
        token_loss(RHO, -1.0, c=1.0)


def test_ppo_clip_loss_aggregates_and_reports():
    # four one-token rows, so seq-mean-token-sum is the plain mean of the §0.5 token losses
    logp = torch.log(RHO).reshape(4, 1).clone().requires_grad_(True)
    old = torch.zeros(4, 1)
    mask = torch.ones(4, 1)
    loss, stats = ppo_clip_loss(logp, old, torch.ones(4), mask, agg="seq-mean-token-sum")
    assert loss.item() == pytest.approx((-1.2 - 0.7 - 1.2 - 1.0) / 4)
    assert stats["clip_frac"] == pytest.approx(0.5)  # tokens 0 and 2 have l2 > l1
    assert stats["ratio_max"] == pytest.approx(1.5) and stats["ratio_min"] == pytest.approx(0.7)
    assert stats["ratio_mean"] == pytest.approx(RHO.mean().item())
    assert stats["approx_kl"] == pytest.approx(-torch.log(RHO).mean().item())
    assert stats["dual_clip_frac"] == 0.0
    _, stats = ppo_clip_loss(torch.log(torch.tensor([[5.0, 1.0]])), torch.zeros(1, 2), torch.tensor([-1.0]),
                             torch.ones(1, 2))
    assert stats["dual_clip_frac"] == pytest.approx(0.5)


def test_ppo_gradient_flows_only_through_unclipped_tokens():
    logp = torch.log(RHO).reshape(1, 4).clone().requires_grad_(True)
    loss, _ = ppo_clip_loss(logp, torch.zeros(1, 4), torch.tensor([1.0]), torch.ones(1, 4))
    loss.backward()
    # d/dlogp of -A * rho / 4 = -rho / 4 where unclipped (tokens 1, 3); clipped tokens get 0
    assert logp.grad[0].tolist() == pytest.approx([0.0, -0.7 / 4, 0.0, -1.0 / 4])


def test_row_and_token_advantages_agree_and_mask_applies():
    torch.manual_seed(0)
    logp, old = torch.randn(3, 5) * 0.3, torch.randn(3, 5) * 0.3
    adv = torch.tensor([1.0, -2.0, 0.5])
    mask = torch.ones(3, 5)
    mask[2, 3:] = 0
    a, _ = ppo_clip_loss(logp, old, adv, mask, agg="seq-mean-token-mean")
    b, _ = ppo_clip_loss(logp, old, adv[:, None].expand(3, 5), mask, agg="seq-mean-token-mean")
    assert a.item() == pytest.approx(b.item())
    garbage = logp.clone()
    garbage[2, 3:] = 50.0  # masked-out tokens do not matter
    c, _ = ppo_clip_loss(garbage, old, adv, mask, agg="seq-mean-token-mean")
    assert c.item() == pytest.approx(a.item())
    with pytest.raises(ValueError, match="advantages"):
        ppo_clip_loss(logp, old, torch.ones(5), mask)


# ------------------------------------------------------------------------------------------------
# §0.6 KL and entropy


def test_low_var_kl_sec06():
    logp = torch.log(torch.tensor([0.5, 0.5, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.5, 0.9]))
    d = ref - logp
    assert low_var_kl(logp, ref).tolist() == pytest.approx((torch.exp(d) - d - 1).tolist())
    assert low_var_kl(logp, ref)[0].item() == pytest.approx(0.5 + math.log(0.5) * -1 - 1)  # 0.1931
    assert low_var_kl(logp, ref)[1].item() == 0.0
    # clamps: kl to [-10, 10]; d to [-20, 20] so exp never overflows (finite, no NaN gradient)
    assert low_var_kl(torch.tensor([-30.0]), torch.tensor([0.0])).item() == 10.0
    assert low_var_kl(torch.tensor([0.0]), torch.tensor([-100.0])).item() == 10.0
    far = torch.tensor([-1000.0], requires_grad=True)
    low_var_kl(far, torch.tensor([0.0])).backward()
    assert far.grad.item() == 0.0
    assert (low_var_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_low_var_kl_gradient():
    logp = torch.log(torch.tensor([0.5, 0.2])).requires_grad_(True)
    ref = torch.log(torch.tensor([0.25, 0.2]))
    low_var_kl(logp, ref).sum().backward()
    # d kl / d logp = -(exp(d) - 1)
    assert logp.grad.tolist() == pytest.approx([0.5, 0.0])


def test_entropy_uniform_is_log_v():
    for vocab in (2, 7, 50_000):
        h = entropy_from_logits(torch.zeros(3, 4, vocab))
        assert h.shape == (3, 4)
        assert torch.allclose(h, torch.full((3, 4), math.log(vocab)), atol=1e-5)


def test_entropy_matches_definition_and_is_stable():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 11, dtype=torch.float64) * 4
    p = torch.softmax(logits, -1)
    assert torch.allclose(entropy_from_logits(logits), -(p * p.log()).sum(-1))
    assert torch.allclose(entropy_from_logits(logits + 1e4), entropy_from_logits(logits))  # shift-invariant
    masked = torch.tensor([[0.0, 0.0, -math.inf, -math.inf]])
    assert entropy_from_logits(masked).item() == pytest.approx(math.log(2))
    assert entropy_from_logits(torch.tensor([[100.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-30)


def test_entropy_chunked_half_precision_and_gradient():
    torch.manual_seed(1)
    logits = torch.randn(4, 5, 13)
    assert torch.allclose(entropy_from_logits(logits, chunk_size=3), entropy_from_logits(logits))
    half = entropy_from_logits(logits.bfloat16())
    assert half.dtype == torch.float32 and torch.allclose(half, entropy_from_logits(logits), atol=0.05)
    leaf = logits.clone().requires_grad_(True)
    entropy_from_logits(leaf, chunk_size=7).mean().backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    masked = torch.tensor([[1.0, 0.0, -math.inf]], requires_grad=True)
    entropy_from_logits(masked).sum().backward()
    assert torch.isfinite(masked.grad).all()
