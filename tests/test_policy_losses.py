"""Ratio variants, SAPO, EPO and the critic loss against the worked examples of algorithms.md.

§5.2 per-row / per-token clip ranges, §6 EPO, §8 ST-PPO turn ratio, §9 GSPO, §10 SAPO, value loss.
Gradient claims are checked with torch autograd, not re-derived by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from algos.losses import (
    POLICY_LOSSES,
    agg_loss,
    epo_phase_weight,
    epo_regularizer,
    epo_smoothing_penalty,
    policy_loss,
    policy_loss_agg,
    ppo_clip_loss,
    ppo_clip_token_loss,
    sapo_token_loss,
    sequence_log_ratio,
    turn_log_ratio,
    value_loss,
)

TOL = 1e-4


def approx(x):
    return pytest.approx(x, abs=TOL)


# ------------------------------------------------------------------------------------------------
# §8.2 ST-PPO turn ratio: one row [t1, t2 | obs, obs | t3, t4]

ST_LOG_RATIO = torch.tensor([[0.1, -0.2, 7.0, -9.0, 0.4, 0.0]])  # obs entries are garbage on purpose
ST_TURNS = torch.tensor([[0, 0, -1, -1, 1, 1]])
ST_MASK = torch.tensor([[1.0, 1, 0, 0, 1, 1]])


def test_turn_ratios_sec82():
    ratio = torch.exp(turn_log_ratio(ST_LOG_RATIO, ST_MASK, ST_TURNS))[0]
    assert ratio[[0, 1]].tolist() == approx([0.9512, 0.9512])  # exp(-0.05)
    assert ratio[[4, 5]].tolist() == approx([1.2214, 1.2214])  # exp(0.2)
    # not-a-turn tokens keep their own token ratio (and do not leak into the turns' means)
    assert ratio[[2, 3]].tolist() == approx([math.exp(7.0), math.exp(-9.0)])


def test_turn_ppo_vs_token_ppo_loss_sec82():
    logp = ST_LOG_RATIO.clone()
    old = torch.zeros_like(logp)
    adv = torch.tensor([0.5])
    turn, stats = policy_loss("turn_ppo", logp, old, adv, ST_MASK, turn_ids=ST_TURNS, clip_low=0.2, clip_high=0.2)
    token, _ = policy_loss("ppo", logp, old, adv, ST_MASK, clip_low=0.2, clip_high=0.2)
    assert turn.item() == approx(-0.5378)
    assert token.item() == approx(-0.5155)
    assert stats["clip_frac"] == approx(0.5)  # turn 1 (ratio 1.2214 > 1.2) is clipped, turn 0 is not
    assert stats["ratio_max"] == approx(1.2214) and stats["ratio_min"] == approx(0.9512)
    assert stats["approx_kl"] == approx(-(0.1 - 0.2 + 0.4 + 0.0) / 4)  # token level, masked tokens only


def test_turn_log_ratio_value_and_gradient_are_the_stop_gradient_trick():
    logp = ST_LOG_RATIO.clone().requires_grad_(True)
    out = turn_log_ratio(logp - torch.zeros_like(logp), ST_MASK, ST_TURNS)
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    (out * weights).sum().backward()
    # d out_j / d logp_i = [i == j]: each token's gradient is its own log-prob's, not the turn mean's
    assert logp.grad.tolist() == [weights[0].tolist()]


def _turn_log_ratio_loop(log_ratio, mask, turn_ids):
    out = log_ratio.clone()
    for b in range(log_ratio.shape[0]):
        keep = (mask[b] > 0) & (turn_ids[b] >= 0)
        for k in turn_ids[b][keep].unique():
            sel = keep & (turn_ids[b] == k)
            out[b, sel] = log_ratio[b, sel].mean()
    return out


def test_turn_log_ratio_vectorised_matches_a_loop_over_turns():
    torch.manual_seed(0)
    lr = torch.randn(4, 9) * 0.3
    mask = (torch.rand(4, 9) > 0.2).float()
    turns = torch.tensor([[0, 0, 0, -1, 1, 1, -1, 2, 2],
                          [3, 3, 7, 7, 7, -1, -1, -1, -1],  # non-contiguous ids are fine
                          [-1, -1, -1, -1, -1, -1, -1, -1, -1],  # no turns: token ratios
                          [0, 0, 0, 0, 0, 0, 0, 0, 0]])
    assert torch.allclose(turn_log_ratio(lr, mask, turns), _turn_log_ratio_loop(lr, mask, turns), atol=1e-6)
    # every token its own turn = token ratio
    own = torch.arange(9).expand(4, 9)
    assert torch.allclose(turn_log_ratio(lr, mask, own), lr)


def test_turn_log_ratio_rejects_bad_inputs():
    with pytest.raises(ValueError, match="integer"):
        turn_log_ratio(ST_LOG_RATIO, ST_MASK, ST_TURNS.float())
    with pytest.raises(ValueError, match="shape"):
        turn_log_ratio(ST_LOG_RATIO, ST_MASK, ST_TURNS[:, :3])


def test_turn_ppo_without_turn_ids_is_one_turn_per_row_and_no_turns_is_ppo():
    torch.manual_seed(1)
    logp, old = torch.randn(3, 5) * 0.2, torch.randn(3, 5) * 0.2
    adv, mask = torch.tensor([1.0, -1.0, 0.3]), torch.ones(3, 5)
    mask[1, 3:] = 0
    a, _ = policy_loss("turn_ppo", logp, old, adv, mask)
    b, _ = policy_loss("turn_ppo", logp, old, adv, mask, turn_ids=torch.zeros(3, 5, dtype=torch.long))
    assert a.item() == pytest.approx(b.item())
    c, _ = policy_loss("turn_ppo", logp, old, adv, mask, turn_ids=torch.full((3, 5), -1))
    d, _ = policy_loss("ppo", logp, old, adv, mask)
    assert c.item() == pytest.approx(d.item())


# ------------------------------------------------------------------------------------------------
# §9.3 GSPO

GS_LOGP = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.3, 0.0]])
GS_OLD = torch.tensor([[-1.1, -1.9, -0.4], [-0.5, -0.5, 0.0]])
GS_MASK = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
GS_ADV = torch.tensor([1.0, -1.0])


def test_gspo_sequence_ratio_and_loss_sec93():
    s = torch.exp(sequence_log_ratio(GS_LOGP - GS_OLD, GS_MASK))
    assert s[0].tolist() == approx([0.9672] * 3)
    assert s[1, :2].tolist() == approx([1.2214] * 2)
    for clip_low, clip_high in ((3e-4, 4e-4), (0.2, 0.2)):  # both sequences sit on the unclipped side
        loss, stats = policy_loss("gspo", GS_LOGP, GS_OLD, GS_ADV, GS_MASK, clip_low=clip_low, clip_high=clip_high)
        assert loss.item() == approx(0.12709)
        assert stats["dual_clip_frac"] == 0.0


def test_gspo_gradient_is_s_times_grad_logp():
    logp = GS_LOGP.clone().requires_grad_(True)
    s = torch.exp(sequence_log_ratio(logp - GS_OLD, GS_MASK))
    (s * GS_MASK).sum().backward()
    s_val = torch.tensor([[0.9672] * 3, [1.2214, 1.2214, 0.0]])
    assert torch.allclose(logp.grad, s_val, atol=TOL)  # d s_{i,t} / d logp_{i,t} = s_i, no cross terms

    logp = GS_LOGP.clone().requires_grad_(True)
    loss, _ = policy_loss("gspo", logp, GS_OLD, GS_ADV, GS_MASK, clip_low=3e-4, clip_high=4e-4)
    loss.backward()
    # seq-mean-token-mean of -A_i s_{i,t}: d/d logp_{i,t} = -A_i s_i / |y_i| / B
    expected = torch.tensor([[-0.9672 / 3 / 2] * 3, [1.2214 / 2 / 2] * 2 + [0.0]])
    assert torch.allclose(logp.grad, expected, atol=TOL)


def test_gspo_clipped_sequence_gets_no_gradient():
    logp = torch.tensor([[0.5, 0.5]], requires_grad=True)  # s = e^0.5 > 1 + eps with A > 0
    loss, stats = policy_loss("gspo", logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2),
                              clip_low=3e-4, clip_high=4e-4)
    loss.backward()
    assert logp.grad.abs().sum().item() == 0.0 and stats["clip_frac"] == 1.0


def test_gspo_ignores_agg_and_dual_clip():
    torch.manual_seed(2)
    logp, old, mask = torch.randn(3, 4), torch.randn(3, 4), torch.ones(3, 4)
    mask[0, 1:] = 0
    adv = torch.tensor([1.0, -2.0, 0.5])
    ref, _ = policy_loss("gspo", logp, old, adv, mask, agg="seq-mean-token-mean")
    for agg in ("token-mean", "seq-mean-token-sum"):
        assert policy_loss("gspo", logp, old, adv, mask, agg=agg)[0].item() == pytest.approx(ref.item())
    # A < 0, s = e^3: vanilla PPO would cap the loss at -A * c = 3; GSPO has no dual clip
    big = torch.full((1, 2), 3.0)
    assert policy_loss("gspo", big, torch.zeros(1, 2), torch.tensor([-1.0]), torch.ones(1, 2))[0].item() == approx(
        math.exp(3.0))
    assert policy_loss("turn_ppo", big, torch.zeros(1, 2), torch.tensor([-1.0]), torch.ones(1, 2))[0].item() == approx(
        3.0)


def test_gspo_log_ratio_clamped_at_10():
    s_log = sequence_log_ratio(torch.full((1, 3), 12.0), torch.ones(1, 3))
    assert s_log.tolist() == [[10.0, 10.0, 10.0]]


def test_turn_ppo_one_turn_per_row_equals_gspo_ratios():
    torch.manual_seed(3)
    lr = torch.randn(4, 6) * 0.5
    mask = (torch.rand(4, 6) > 0.3).float()
    mask[:, 0] = 1
    turn = turn_log_ratio(lr, mask, torch.zeros(4, 6, dtype=torch.long))
    seq = sequence_log_ratio(lr, mask)
    m = mask.bool()
    assert torch.allclose(torch.exp(turn)[m], torch.exp(seq)[m])
    # and the losses agree once turn_ppo uses GSPO's aggregation and no dual clip
    logp, old, adv = lr, torch.zeros(4, 6), torch.tensor([1.0, -1.0, 0.5, -0.2])
    kw = dict(clip_low=0.1, clip_high=0.1)
    a, sa = policy_loss("turn_ppo", logp, old, adv, mask, clip_ratio_c=None, agg="seq-mean-token-mean", **kw)
    b, sb = policy_loss("gspo", logp, old, adv, mask, **kw)
    assert a.item() == pytest.approx(b.item())
    assert sa == pytest.approx(sb)


# ------------------------------------------------------------------------------------------------
# §10.2 SAPO

SAPO_R = [0.5, 0.9, 1.0, 1.1, 1.5, 3.0]
SAPO_POS = {"gate": [1.5102, 1.9001, 2.0000, 2.0999, 2.4898, 3.5232],
            "grad": [0.4700, 0.8978, 1.0000, 1.0973, 1.4100, 1.2599]}
SAPO_NEG = {"gate": [1.4159, 1.8049, 1.9048, 2.0047, 2.3936, 3.3939],
            "grad": [0.4671, 0.8975, 1.0000, 1.0970, 1.4012, 1.1663]}


@pytest.mark.parametrize("adv, table", [(1.0, SAPO_POS), (-1.0, SAPO_NEG)])
def test_sapo_gate_table_sec102(adv, table):
    log_r = torch.log(torch.tensor(SAPO_R)).unsqueeze(-1)
    loss, gate, grad_weight, _ = sapo_token_loss(log_r, torch.full((6,), adv))
    assert gate.squeeze(-1).tolist() == approx(table["gate"])
    assert grad_weight.squeeze(-1).tolist() == approx(table["grad"])
    assert loss.squeeze(-1).tolist() == approx([-adv * g for g in table["gate"]])


@pytest.mark.parametrize("adv, table", [(1.0, SAPO_POS), (-1.0, SAPO_NEG)])
def test_sapo_gradient_weight_by_autograd_sec102(adv, table):
    # six one-token rows: seq-mean-token-mean divides by B = 6
    logp = torch.log(torch.tensor(SAPO_R)).unsqueeze(-1).requires_grad_(True)
    loss, stats = policy_loss("sapo", logp, torch.zeros(6, 1), torch.full((6,), adv), torch.ones(6, 1))
    (-loss * 6).backward()
    # d(-l)/d logp = A * f'(r) * r = A * grad weight
    assert logp.grad.squeeze(-1).tolist() == approx([adv * w for w in table["grad"]])
    assert stats["gate_mean"] == approx(sum(table["gate"]) / 6)
    assert stats["gate_grad_weight_mean"] == approx(sum(table["grad"]) / 6)
    assert "clip_frac" not in stats


def test_sapo_on_policy_is_plain_policy_gradient_and_forces_seq_mean():
    torch.manual_seed(4)
    logp = (torch.randn(3, 4) * 0.1).requires_grad_(True)
    adv, mask = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    loss, stats = policy_loss("sapo", logp, logp.detach(), adv, mask, agg="token-mean")
    loss.backward()
    # on-policy the gate's gradient weight is 1: gradient of seq-mean-token-mean(-A * logp)
    expected = -adv[:, None] * mask / mask.sum(-1, keepdim=True) / 3
    assert torch.allclose(logp.grad, expected, atol=1e-6)
    assert stats["gate_grad_weight_mean"] == approx(1.0)
    with pytest.raises(ValueError, match="tau"):
        sapo_token_loss(torch.zeros(2), torch.ones(2), tau_pos=0.0)


# ------------------------------------------------------------------------------------------------
# policy_loss dispatch


def test_policy_loss_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        policy_loss("grpo", torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1), torch.ones(1, 2))
    for name in POLICY_LOSSES:
        assert name in str(err.value)


def test_policy_loss_agg_reports_the_forced_mode():
    assert [policy_loss_agg(n, "token-mean") for n in POLICY_LOSSES] == [
        "token-mean", "token-mean", "seq-mean-token-mean", "seq-mean-token-mean"]


def test_policy_loss_ppo_is_ppo_clip_loss():
    torch.manual_seed(5)
    logp, old = torch.randn(3, 5) * 0.3, torch.randn(3, 5) * 0.3
    adv, mask = torch.tensor([1.0, -2.0, 0.5]), torch.ones(3, 5)
    for agg in ("token-mean", "seq-mean-token-sum"):
        a, sa = policy_loss("ppo", logp, old, adv, mask, clip_low=0.2, clip_high=0.28, agg=agg)
        b, sb = ppo_clip_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28, agg=agg)
        assert a.item() == b.item() and sa == sb


@pytest.mark.parametrize("name", POLICY_LOSSES)
def test_row_and_token_advantages_agree(name):
    torch.manual_seed(6)
    logp, old = torch.randn(3, 5) * 0.3, torch.randn(3, 5) * 0.3
    adv, mask = torch.tensor([1.0, -2.0, 0.5]), torch.ones(3, 5)
    mask[2, 3:] = 0
    a, _ = policy_loss(name, logp, old, adv, mask)
    b, _ = policy_loss(name, logp, old, adv[:, None].expand(3, 5), mask)
    assert a.item() == pytest.approx(b.item())
    garbage = logp.clone()
    garbage[2, 3:] = 50.0  # masked-out tokens matter neither to the value nor to the gradient
    garbage.requires_grad_(True)
    c, _ = policy_loss(name, garbage, old, adv, mask, turn_ids=torch.zeros(3, 5, dtype=torch.long))
    c.backward()
    assert c.item() == pytest.approx(a.item()) and garbage.grad[2, 3:].abs().sum().item() == 0.0
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(name, logp, old, torch.ones(5), mask)


# ------------------------------------------------------------------------------------------------
# §5.2 clip ranges per row / per token


def _spread_log_ratio(b, t, seed):
    torch.manual_seed(seed)
    return torch.log(torch.rand(b, t) * 1.2 + 0.4)  # ratios in [0.4, 1.6]: both clip sides bind


def test_per_row_clip_equals_separate_float_calls():
    lr = _spread_log_ratio(4, 6, 7)
    adv = torch.tensor([1.0, -1.0, 0.7, -0.3])
    lo, hi = torch.tensor([0.1, 0.2, 0.2329, 0.1674]), torch.tensor([0.15, 0.28, 0.2329, 0.1674])
    loss, clipped, dual, _ = ppo_clip_token_loss(lr, adv, lo, hi, 3.0)
    for b in range(4):
        ref, ref_clipped, ref_dual, _ = ppo_clip_token_loss(lr[b:b + 1], adv[b:b + 1], lo[b].item(), hi[b].item(), 3.0)
        assert torch.allclose(loss[b], ref[0]) and torch.equal(clipped[b], ref_clipped[0])
        assert torch.equal(dual[b], ref_dual[0])
    assert clipped.any() and not clipped.all()  # the example exercises the clip


def test_per_token_clip_equals_float_calls_per_token():
    lr = _spread_log_ratio(2, 5, 8)
    adv = torch.tensor([[1.0, -1, 1, -1, 1], [-1, 1, -1, 1, -1]])
    eps = torch.tensor([[0.1, 0.2, 0.3, 0.05, 0.2], [0.2329, 0.2277, 0.2, 0.1674, 0.2]])
    loss, *_ = ppo_clip_token_loss(lr, adv, eps, eps)
    for b in range(2):
        for t in range(5):
            ref, *_ = ppo_clip_token_loss(lr[b, t:t + 1], adv[b, t:t + 1], eps[b, t].item(), eps[b, t].item())
            assert loss[b, t].item() == pytest.approx(ref.item())


def test_clip_tensors_through_the_aggregated_losses():
    lr = _spread_log_ratio(3, 4, 9)
    old, adv, mask = torch.zeros(3, 4), torch.tensor([1.0, -1.0, 0.5]), torch.ones(3, 4)
    eps = torch.tensor([0.1, 0.2, 0.3])
    row_losses = [ppo_clip_loss(lr[b:b + 1], old[b:b + 1], adv[b:b + 1], mask[b:b + 1], eps[b].item(), eps[b].item(),
                                agg="seq-mean-token-mean")[0].item() for b in range(3)]
    whole, _ = ppo_clip_loss(lr, old, adv, mask, eps, eps, agg="seq-mean-token-mean")
    assert whole.item() == pytest.approx(sum(row_losses) / 3)
    per_token = eps[:, None].expand(3, 4)
    for name in ("ppo", "turn_ppo", "gspo"):
        a, _ = policy_loss(name, lr, old, adv, mask, clip_low=eps, clip_high=eps)
        b, _ = policy_loss(name, lr, old, adv, mask, clip_low=per_token, clip_high=per_token)
        assert a.item() == pytest.approx(b.item())
    with pytest.raises(ValueError, match="clip_low"):
        ppo_clip_loss(lr, old, adv, mask, torch.ones(4) * 0.2, 0.2)


def test_clip_tensor_gets_no_gradient_and_float_behaviour_is_unchanged():
    lr = _spread_log_ratio(2, 3, 10)
    eps = torch.tensor([0.2, 0.2], requires_grad=True)
    loss, *_ = ppo_clip_token_loss(lr, torch.tensor([1.0, -1.0]), eps, eps)
    ref, *_ = ppo_clip_token_loss(lr, torch.tensor([1.0, -1.0]), 0.2, 0.2)
    assert torch.equal(loss, ref) and not loss.requires_grad


# ------------------------------------------------------------------------------------------------
# §6 EPO

EPO_H = torch.tensor([[0.4, 0.9, 1.6]])
EPO_REF = torch.tensor([1.0])
EPO_MASK = torch.ones(1, 3)


def test_epo_phase_weight_table_sec61():
    table = {0: 1.0, 25: 0.9027, 50: 0.8527, 75: 0.8271, 100: 0.2943, 125: 0.1083, 150: 0.0398}
    assert [epo_phase_weight(e) for e in table] == approx(list(table.values()))
    assert epo_phase_weight(300) == epo_phase_weight(150) and epo_phase_weight(-5) == 1.0  # clamped
    assert epo_phase_weight(10, total_epochs=20) == pytest.approx(epo_phase_weight(75, 150))  # scales with E
    assert epo_phase_weight(3, total_epochs=0) == 1.0


def test_epo_faithful_penalty_and_loss_shift_sec64():
    p = epo_smoothing_penalty(EPO_H, EPO_REF, EPO_MASK, kappa_lo=0.5, kappa_hi=1.5, penalty=0.1, faithful=True)
    assert p.tolist() == [approx([0.1, 0.0, 0.1])]
    assert agg_loss(p, EPO_MASK, "token-mean").item() == approx(0.0667)
    kw = dict(entropy_coef=0.001, phase_weight=1.0, kappa_lo=0.5, kappa_hi=1.5, penalty=0.1, faithful=True)
    with_smooth, stats = epo_regularizer(EPO_H, EPO_REF, EPO_MASK, "token-mean", smooth_coef=1.0, **kw)
    bonus_only, _ = epo_regularizer(EPO_H, EPO_REF, EPO_MASK, "token-mean", smooth_coef=0.0, **kw)
    assert bonus_only.item() == pytest.approx(-0.001 * EPO_H.mean().item())
    assert (with_smooth - bonus_only).item() == pytest.approx(6.667e-5, abs=1e-8)
    assert stats["epo_penalty"] == approx(0.0667) and stats["epo_out_of_band_frac"] == approx(2 / 3)
    assert stats["entropy"] == approx(0.9667) and stats["epo_phase_weight"] == 1.0


def _entropy_grad(faithful, smooth_coef, h=EPO_H):
    h = h.clone().requires_grad_(True)
    term, _ = epo_regularizer(h, EPO_REF, EPO_MASK, "token-mean", entropy_coef=0.001, smooth_coef=smooth_coef,
                              phase_weight=1.0, kappa_lo=0.5, kappa_hi=1.5, penalty=0.1, faithful=faithful)
    term.backward()
    return h.grad


def test_epo_faithful_penalty_has_zero_gradient_sec61():
    p = epo_smoothing_penalty(EPO_H.clone().requires_grad_(True), EPO_REF, EPO_MASK, faithful=True)
    assert not p.requires_grad
    assert torch.equal(_entropy_grad(True, 1.0), _entropy_grad(True, 0.0))  # only the entropy bonus acts


def test_epo_differentiable_penalty_pushes_entropy_into_the_band():
    p = epo_smoothing_penalty(EPO_H, EPO_REF, EPO_MASK, kappa_lo=0.5, kappa_hi=1.5, penalty=0.1)
    assert p.tolist() == [approx([0.01, 0.0, 0.01])]  # 0.1 * relative distance 0.1 outside the band
    smooth_part = _entropy_grad(False, 1.0) - _entropy_grad(False, 0.0)
    # d(+c_H * agg(p))/dH = c_H * 0.1 * [-1, 0, +1] / 3: descent raises H below the band, lowers it above
    assert smooth_part[0].tolist() == pytest.approx([-0.001 * 0.1 / 3, 0.0, 0.001 * 0.1 / 3], abs=1e-9)
    # scale-free: the same relative position gives the same penalty at any H-bar
    p2 = epo_smoothing_penalty(EPO_H * 4, EPO_REF * 4, EPO_MASK, kappa_lo=0.5, kappa_hi=1.5, penalty=0.1)
    assert torch.allclose(p, p2)


def test_epo_seq_mode_masks_and_missing_reference():
    h = torch.tensor([[0.2, 0.2, 99.0], [1.0, 1.2, 0.8]])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1]])
    ref = torch.tensor([1.0, 1.0])
    p = epo_smoothing_penalty(h, ref, mask, mode="seq", faithful=True)
    # row 0: masked mean 0.2 (the padded 99 is ignored) is below 0.5 -> every trained token penalised
    assert p.tolist() == [approx([0.1, 0.1, 0.0]), [0.0, 0.0, 0.0]]
    hg = h.clone().requires_grad_(True)
    epo_smoothing_penalty(hg, ref, mask, mode="seq").sum().backward()
    # differentiable seq mode: the row-mean hinge spreads over the row's masked tokens
    assert hg.grad[0].tolist() == pytest.approx([-0.1, -0.1, 0.0])
    assert hg.grad[1].tolist() == [0.0, 0.0, 0.0]
    # no entropy history for the turn yet (H-bar 0 or NaN): no penalty
    none = epo_smoothing_penalty(h, torch.tensor([0.0, float("nan")]), mask, faithful=True)
    assert none.abs().sum().item() == 0.0
    with pytest.raises(ValueError, match="mode"):
        epo_smoothing_penalty(h, ref, mask, mode="turn")
    with pytest.raises(ValueError, match="ref_entropy"):
        epo_smoothing_penalty(h, ref[:1], mask)


# ------------------------------------------------------------------------------------------------
# PPO critic


VALUES = [0.9, 1.5, 0.0]
OLD_VALUES = [1.0, 1.0, 1.0]
RETURNS = [2.0, 2.0, 3.0]


def test_value_loss_hand_example():
    v = torch.tensor(VALUES, requires_grad=True)
    loss, stats = value_loss(v, torch.tensor(OLD_VALUES), torch.tensor(RETURNS), clip=0.2)
    # row 0 inside the band: 1.21; row 1 clipped to 1.2: max(0.25, 0.64) = 0.64; row 2 clipped to
    # 0.8: max(9, 4.84) = 9 (the unclipped error is larger, so it keeps its gradient)
    assert loss.item() == pytest.approx(0.5 * (1.21 + 0.64 + 9.0) / 3)
    assert stats["vf_clip_frac"] == pytest.approx(1 / 3)
    loss.backward()
    assert v.grad.tolist() == pytest.approx([(0.9 - 2.0) / 3, 0.0, (0.0 - 3.0) / 3])
    r, vv = torch.tensor(RETURNS), torch.tensor(VALUES)
    ev = 1 - (r - vv).var(unbiased=False) / (r.var(unbiased=False) + 1e-5)
    assert stats["explained_variance"] == pytest.approx(ev.item())
    assert stats["value_mean"] == pytest.approx(0.8) and stats["return_mean"] == pytest.approx(7 / 3)


def test_value_loss_unclipped_and_errors():
    v = torch.tensor(VALUES)
    loss, stats = value_loss(v, torch.tensor(OLD_VALUES), torch.tensor(RETURNS), clip=None)
    assert loss.item() == pytest.approx(0.5 * (1.21 + 0.25 + 9.0) / 3) and stats["vf_clip_frac"] == 0.0
    perfect, stats = value_loss(torch.tensor(RETURNS), torch.tensor(RETURNS), torch.tensor(RETURNS))
    assert perfect.item() == 0.0 and stats["explained_variance"] == pytest.approx(1.0)
    assert value_loss(torch.ones(1), torch.ones(1), torch.ones(1))[1]["explained_variance"] == 1.0  # no NaN
    with pytest.raises(ValueError, match="shape"):
        value_loss(v, torch.tensor(OLD_VALUES[:2]), torch.tensor(RETURNS))
    with pytest.raises(ValueError, match="clip"):
        value_loss(v, v, v, clip=0.0)
