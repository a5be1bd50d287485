"""Policy, regulariser and critic losses (algorithms.md §0.4 - §0.6, §5.2, §6, §8 - §10), in torch.

Shapes: `[B, T]` per-token tensors (B rows, T response positions) with a `[B, T]` loss mask
(1 = the token is trained on). Advantages are per row `[B]` or per token `[B, T]`.

    agg_loss              the four verl aggregation modes (§0.4)
    ppo_clip_token_loss   per-token clipped surrogate with dual clip, from a log-ratio (§0.5)
    ppo_clip_loss         ratio from log-probs + clipping + aggregation + logging stats (§0.5)
    low_var_kl            k3 KL estimator to the reference policy, per token (§0.6)
    entropy_from_logits   full-vocabulary token entropy (§0.6)

    turn_log_ratio        ST-PPO's turn-level log-ratio with the GSPO-token stop-gradient trick (§8)
    sequence_log_ratio    GSPO's sequence-level log-ratio, clamped <= 10 (§9)
    sapo_token_loss       SAPO's soft-gated per-token loss (§10)
    policy_loss           one entry point: "ppo", "turn_ppo", "gspo", "sapo" (POLICY_LOSSES)
    policy_loss_agg       the aggregation a policy loss really uses (gspo / sapo force seq-mean-token-mean)
    epo_phase_weight      EPO's adaptive phase weight beta(e) (§6.1.4)
    epo_smoothing_penalty EPO's entropy-smoothing penalty, released (gradient-free) or differentiable (§6.1.3)
    epo_regularizer       the EPO term to add to the loss: -c_H * (agg(H) - lambda_s * beta * agg(p)) (§6)
    value_loss            verl's clipped value loss for a PPO critic, with logging stats

Clip ranges (`clip_low`, `clip_high`) may be a float, a per-row `[B]` tensor or a per-token `[B, T]`
tensor, so A²TGPO's adaptive per-turn ranges (§5.2) go through the same code as DAPO's constants.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: A clip range: one float for the batch, a [B] tensor (per row) or a [B, T] tensor (per token).
ClipRange = float | torch.Tensor

AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(mask * values) / sum(mask); 0 when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1e-8)


def agg_loss(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str, const: float | None = None) -> torch.Tensor:
    """Aggregate a per-token loss `loss_mat[B, T]` under `mask[B, T]` into a scalar (§0.4).

    token-mean:               sum(m*l) / sum(m)              every token weighs the same (DAPO)
    seq-mean-token-sum:       mean_b sum_t m*l                (IGPO)
    seq-mean-token-mean:      mean_b (sum_t m*l / sum_t m)    (original GRPO; GSPO / SAPO)
    seq-mean-token-sum-norm:  sum(m*l) / C                    (Dr.GRPO); C = `const`, default B * T
                              (B * L_max as in TRL; T = loss_mat.shape[1] is the max response length)
    Rows whose mask is all zero are left out of the seq-* means.
    """
    if loss_mat.dim() != 2 or mask.shape != loss_mat.shape:
        raise ValueError(f"agg_loss expects loss_mat and mask of the same [B, T] shape, got "
                         f"{tuple(loss_mat.shape)} and {tuple(mask.shape)}")
    mask = mask.to(loss_mat.dtype)
    if mode == "token-mean":
        return masked_mean(loss_mat, mask)
    if mode == "seq-mean-token-sum-norm":
        denom = const if const is not None else loss_mat.shape[0] * loss_mat.shape[1]
        return (loss_mat * mask).sum() / denom
    if mode in ("seq-mean-token-sum", "seq-mean-token-mean"):
        tokens = mask.sum(dim=-1)
        per_seq = (loss_mat * mask).sum(dim=-1)
        if mode == "seq-mean-token-mean":
            per_seq = per_seq / tokens.clamp_min(1e-8)
        keep = (tokens > 0).to(loss_mat.dtype)  # all-zero-mask rows are excluded
        return (per_seq * keep).sum() / keep.sum().clamp_min(1.0)
    raise ValueError(f"unknown loss aggregation mode {mode!r}; expected one of {AGG_MODES}")


def _clip_bound(clip: ClipRange, like: torch.Tensor, name: str) -> torch.Tensor | float:
    """A clip range shaped to broadcast against `like` ([B, T] or [N]): floats pass through."""
    if not isinstance(clip, torch.Tensor):
        return float(clip)
    clip = clip.detach().to(like.dtype)
    if clip.shape == like.shape:
        return clip
    if like.dim() == 2 and clip.shape == like.shape[:1]:
        return clip.unsqueeze(-1)  # per row -> all of the row's tokens
    if clip.dim() == 0:
        return clip
    raise ValueError(f"{name} must be a float, a [B] or a [B, T] = {tuple(like.shape)} tensor, "
                     f"got shape {tuple(clip.shape)}")


def ppo_clip_token_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: ClipRange = 0.2,
    clip_high: ClipRange = 0.2,
    clip_ratio_c: float | None = 3.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token PPO clipped loss with dual clip (§0.5), from log(rho) = logp - old_logp.

        rho = exp(clamp(log_ratio, -20, 20))
        l1 = -A * rho;  l2 = -A * clip(rho, 1 - clip_low, 1 + clip_high);  l_clip = max(l1, l2)
        dual clip where A < 0:  l = min(l_clip, -A * c)

    `advantages` broadcasts against `log_ratio` ([B] is treated as [B, 1]). `clip_low` / `clip_high`
    are floats, [B] tensors (per row) or [B, T] tensors (per token, e.g. A²TGPO's per-turn
    eps_t, §5.2); tensors are treated as constants. `clip_ratio_c=None` disables the dual clip.
    Returns (loss, clipped, dual_clipped, rho): `clipped` marks l2 > l1, `dual_clipped` marks
    tokens where the dual clip bound was taken.
    """
    if clip_ratio_c is not None and clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1.0 (or None to disable the dual clip), got {clip_ratio_c}")
    adv = advantages.detach()
    if adv.dim() == 1 and log_ratio.dim() == 2:
        adv = adv.unsqueeze(-1)
    ratio = torch.exp(log_ratio.clamp(-20.0, 20.0))
    # torch.clamp wants both bounds of one kind, so bounds become tensors for minimum / maximum
    lo = torch.as_tensor(1.0 - _clip_bound(clip_low, log_ratio, "clip_low"), dtype=ratio.dtype, device=ratio.device)
    hi = torch.as_tensor(1.0 + _clip_bound(clip_high, log_ratio, "clip_high"), dtype=ratio.dtype, device=ratio.device)
    loss1 = -adv * ratio
    loss2 = -adv * torch.minimum(torch.maximum(ratio, lo), hi)
    loss = torch.maximum(loss1, loss2)
    clipped = loss2 > loss1
    if clip_ratio_c is None:
        return loss, clipped, torch.zeros_like(clipped), ratio
    loss3 = -adv * clip_ratio_c
    dual_clipped = (adv < 0) & (loss3 < loss)
    loss = torch.where(adv < 0, torch.minimum(loss, loss3), loss)
    return loss, clipped, dual_clipped, ratio


def _check_policy_inputs(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                         mask: torch.Tensor) -> None:
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"logp, old_logp and mask must share a shape, got {tuple(logp.shape)}, "
                         f"{tuple(old_logp.shape)}, {tuple(mask.shape)}")
    if advantages.shape not in (logp.shape, logp.shape[:1]):
        raise ValueError(f"advantages must be [B] or [B, T] = {tuple(logp.shape)}, got {tuple(advantages.shape)}")


@torch.no_grad()
def _ratio_stats(ratio: torch.Tensor, token_log_ratio: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """ratio_mean / max / min over masked tokens (1.0 when none is), approx_kl = mean(old - new)."""
    ratio_in = ratio[mask.bool()]
    return {
        "ratio_mean": ratio_in.mean().item() if ratio_in.numel() else 1.0,
        "ratio_max": ratio_in.max().item() if ratio_in.numel() else 1.0,
        "ratio_min": ratio_in.min().item() if ratio_in.numel() else 1.0,
        "approx_kl": masked_mean(-token_log_ratio, mask).item(),
    }


def _clipped_surrogate(ratio_log: torch.Tensor, token_log_ratio: torch.Tensor, advantages: torch.Tensor,
                       mask: torch.Tensor, clip_low: ClipRange, clip_high: ClipRange,
                       clip_ratio_c: float | None, agg: str) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clip of whichever ratio `ratio_log` holds (token, turn or sequence) + aggregation + stats."""
    loss_mat, clipped, dual_clipped, ratio = ppo_clip_token_loss(
        ratio_log, advantages.to(ratio_log.dtype), clip_low, clip_high, clip_ratio_c)
    loss = agg_loss(loss_mat, mask, agg)
    with torch.no_grad():
        stats = {"clip_frac": masked_mean(clipped.to(ratio.dtype), mask).item(),
                 "dual_clip_frac": masked_mean(dual_clipped.to(ratio.dtype), mask).item(),
                 **_ratio_stats(ratio, token_log_ratio, mask)}
    return loss, stats


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: ClipRange = 0.2,
    clip_high: ClipRange = 0.2,
    clip_ratio_c: float | None = 3.0,
    agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """The vanilla (verl) PPO policy loss (§0.5), aggregated with `agg` (§0.4).

    logp, old_logp, mask: [B, T]; advantages: [B] (per row, broadcast to its tokens) or [B, T].
    `clip_high > clip_low` is DAPO's clip-higher; either may be a [B] or [B, T] tensor (§5.2).
    old_logp and advantages are treated as constants.
    Returns (loss, stats) with stats over the masked tokens: clip_frac (share with l2 > l1),
    dual_clip_frac, ratio_mean / ratio_max / ratio_min (1.0 when no token is masked in), and
    approx_kl = mean(old_logp - logp).
    """
    _check_policy_inputs(logp, old_logp, advantages, mask)
    log_ratio = logp - old_logp.detach()
    return _clipped_surrogate(log_ratio, log_ratio, advantages, mask, clip_low, clip_high, clip_ratio_c, agg)


# ------------------------------------------------------------------------------------------------
# Ratio granularity (§8, §9), SAPO's soft gate (§10) and the `policy_loss` entry point

POLICY_LOSSES = ("ppo", "turn_ppo", "gspo", "sapo")


def _segment_mean(values: torch.Tensor, keep: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the kept tokens of each (row, segment id) pair, broadcast back to [B, T].

    One scatter_add over flat (row * n_segments + id) keys instead of a Python loop over turns;
    tokens that are not kept add nothing (their value is zeroed first, so NaN / inf in padding
    cannot leak into a turn's mean).
    """
    b, t = values.shape
    ids = segment_ids.clamp_min(0)
    n_seg = int(ids.max().item()) + 1 if ids.numel() else 1
    key = (torch.arange(b, device=values.device).unsqueeze(-1) * n_seg + ids).reshape(-1)
    flat = torch.where(keep, values, torch.zeros_like(values)).reshape(-1)
    sums = torch.zeros(b * n_seg, dtype=values.dtype, device=values.device).scatter_add_(0, key, flat)
    counts = torch.zeros_like(sums).scatter_add_(0, key, keep.to(values.dtype).reshape(-1))
    return (sums / counts.clamp_min(1.0))[key].reshape(b, t)


def turn_log_ratio(log_ratio: torch.Tensor, mask: torch.Tensor, turn_ids: torch.Tensor) -> torch.Tensor:
    """ST-PPO's turn-level log importance ratio per token (§8.1), [B, T].

        log rho_{k,j} = sg[mean_{i in turn k} log_ratio_i] + log_ratio_j - sg[log_ratio_j]

    i.e. every token of turn k carries the turn's mean log-ratio (rho_k = geometric mean of the
    turn's token ratios) as its value, while its gradient stays that of its own log-prob
    (GSPO-token stop-gradient trick), so per-token advantages can still differ within a turn.
    `turn_ids` [B, T] integer, per row; -1 or a masked-out token = not a turn token. Such tokens
    keep their own token log-ratio (so all -1 ids give plain token-level PPO).
    """
    if log_ratio.dim() != 2 or log_ratio.shape != mask.shape or turn_ids.shape != log_ratio.shape:
        raise ValueError(f"log_ratio, mask and turn_ids must share a [B, T] shape, got {tuple(log_ratio.shape)}, "
                         f"{tuple(mask.shape)}, {tuple(turn_ids.shape)}")
    if turn_ids.is_floating_point() or turn_ids.dtype == torch.bool:
        raise ValueError(f"turn_ids must be an integer tensor, got {turn_ids.dtype}")
    turn_ids = turn_ids.long()
    keep = mask.bool() & (turn_ids >= 0)
    constant = log_ratio.detach()
    turn_mean = _segment_mean(constant, keep, turn_ids)
    # (log_ratio - constant) is exactly 0 in value, so the value is exactly the turn mean
    shared = turn_mean + (log_ratio - constant)
    return torch.where(keep, shared, log_ratio)


def sequence_log_ratio(log_ratio: torch.Tensor, mask: torch.Tensor, max_log_ratio: float = 10.0) -> torch.Tensor:
    """GSPO's sequence-level log ratio per token (§9.2): the turn ratio with one turn per row.

        log s_{i,t} = min(sg[(1/|y_i|) sum_t m log_ratio] + log_ratio_{i,t} - sg[log_ratio_{i,t}], 10)

    Value s_i for every token of row i, gradient s_i * grad logp_{i,t}; clamped <= 10 before the
    exp as verl does (the clamp also stops the gradient of a row that far off-policy).
    """
    return turn_log_ratio(log_ratio, mask, torch.zeros_like(log_ratio, dtype=torch.long)).clamp(max=max_log_ratio)


def sapo_token_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAPO's per-token loss (§10.1): a soft, temperature-controlled gate in place of the clip.

        r = exp(clamp(log_ratio, -20, 20));  tau = tau_pos if A > 0 else tau_neg
        f(r) = sigmoid(tau (r - 1)) * 4 / tau;   l = -f(r) * A

    d f / d log pi = 4 sigma (1 - sigma) r: 1 on-policy (plain policy gradient), decaying smoothly
    off-policy instead of dropping to 0 at a clip boundary. Returns (loss, gate, grad_weight, ratio),
    grad_weight = 4 sigma (1 - sigma) r detached (for logging).
    """
    if tau_pos <= 0 or tau_neg <= 0:
        raise ValueError(f"SAPO temperatures must be > 0, got tau_pos={tau_pos}, tau_neg={tau_neg}")
    adv = advantages.detach().to(log_ratio.dtype)
    if adv.dim() == 1 and log_ratio.dim() == 2:
        adv = adv.unsqueeze(-1)
    ratio = torch.exp(log_ratio.clamp(-20.0, 20.0))
    tau = torch.where(adv > 0, torch.tensor(tau_pos, dtype=ratio.dtype, device=ratio.device),
                      torch.tensor(tau_neg, dtype=ratio.dtype, device=ratio.device))
    sig = torch.sigmoid(tau * (ratio - 1.0))
    gate = sig * (4.0 / tau)
    grad_weight = (4.0 * sig * (1.0 - sig) * ratio).detach()
    return -gate * adv, gate, grad_weight, ratio


def _sapo_loss(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, tau_pos: float,
               tau_neg: float, agg: str) -> tuple[torch.Tensor, dict[str, float]]:
    loss_mat, gate, grad_weight, ratio = sapo_token_loss(log_ratio, advantages, tau_pos, tau_neg)
    loss = agg_loss(loss_mat, mask, agg)
    with torch.no_grad():
        # No clipping to count; the gate says how much of the plain policy gradient survives.
        stats = {"gate_mean": masked_mean(gate.expand_as(ratio), mask).item(),
                 "gate_grad_weight_mean": masked_mean(grad_weight.expand_as(ratio), mask).item(),
                 **_ratio_stats(ratio, log_ratio, mask)}
    return loss, stats


def policy_loss_agg(name: str, agg: str) -> str:
    """The aggregation `policy_loss(name, ..., agg=agg)` actually applies: GSPO and SAPO force
    seq-mean-token-mean whatever is configured (App. B.8). Micro-batch gradient-accumulation weights
    must follow this, not the configured mode."""
    return "seq-mean-token-mean" if name in ("gspo", "sapo") else agg


def policy_loss(
    name: str,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    turn_ids: torch.Tensor | None = None,
    clip_low: ClipRange = 0.2,
    clip_high: ClipRange = 0.2,
    clip_ratio_c: float | None = 3.0,
    agg: str = "token-mean",
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The policy-gradient loss `name` (one of POLICY_LOSSES) -> (scalar loss, logging stats).

    logp, old_logp, mask: [B, T]; advantages [B] or [B, T]; old_logp and advantages are constants.

        ppo       token ratio, PPO clip + dual clip, `agg` (§0.5) - identical to `ppo_clip_loss`
        turn_ppo  ST-PPO turn ratio (`turn_log_ratio`, §8) with PPO clip + dual clip, `agg`;
                  turn_ids None = one turn per row (GSPO's ratio without its <= 10 clamp)
        gspo      sequence ratio (`sequence_log_ratio`, §9), PPO clip, NO dual clip; the configured
                  `agg` and `clip_ratio_c` are ignored: aggregation is forced to seq-mean-token-mean
                  as in verl (App. B.8). Mind GSPO's own clip ranges (3e-4 / 4e-4), not PPO's 0.2
        sapo      SAPO soft gate (`sapo_token_loss`, §10) with tau_pos / tau_neg; no clipping (clip_*
                  ignored), aggregation forced to seq-mean-token-mean

    `turn_ids` is read by turn_ppo only. Clip ranges may be floats, [B] or [B, T] tensors (§5.2).
    Stats: clip_frac, dual_clip_frac (0 for gspo), ratio_mean / ratio_max / ratio_min of the ratio
    actually clipped (token, turn or sequence), approx_kl = token-level mean(old_logp - logp).
    sapo reports gate_mean (mean f(r)) and gate_grad_weight_mean (mean 4 sigma (1 - sigma) r, 1 =
    plain policy gradient) instead of clip fractions.
    """
    if name not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {name!r}; expected one of {POLICY_LOSSES}")
    _check_policy_inputs(logp, old_logp, advantages, mask)
    log_ratio = logp - old_logp.detach()
    if name == "ppo":
        return _clipped_surrogate(log_ratio, log_ratio, advantages, mask, clip_low, clip_high, clip_ratio_c, agg)
    if name == "turn_ppo":
        ids = turn_ids if turn_ids is not None else torch.zeros_like(log_ratio, dtype=torch.long)
        return _clipped_surrogate(turn_log_ratio(log_ratio, mask, ids), log_ratio, advantages, mask,
                                  clip_low, clip_high, clip_ratio_c, agg)
    if name == "gspo":
        return _clipped_surrogate(sequence_log_ratio(log_ratio, mask), log_ratio, advantages, mask,
                                  clip_low, clip_high, None, policy_loss_agg(name, agg))
    return _sapo_loss(log_ratio, advantages, mask, tau_pos, tau_neg, policy_loss_agg(name, agg))


# ------------------------------------------------------------------------------------------------
# KL and entropy (§0.6)


def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref) (§0.6), aggregate it with `agg_loss`.

        d = clamp(ref_logp - logp, -20, 20);  kl = exp(d) - d - 1, clamped to [-10, 10]
    """
    d = (ref_logp - logp).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    # 0 * log 0 := 0, so logits of -inf (masked vocabulary entries) give no NaN
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(dim=-1)


def entropy_from_logits(logits: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Token entropy H = -sum_v p_v log p_v over the full vocabulary (last dim) (§0.6).

    Uses log_softmax (stable for large logits); fp16/bf16 logits are computed in fp32.
    `chunk_size` processes that many positions at a time so the [N, V] temporaries stay small
    (the saving is in peak temporaries, e.g. for no-grad logging of long sequences).
    Returns logits.shape[:-1].
    """
    if chunk_size is None:
        return _entropy(logits)
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.cat([_entropy(chunk) for chunk in flat.split(chunk_size)]) if flat.shape[0] else _entropy(flat)
    return out.reshape(logits.shape[:-1])


# ------------------------------------------------------------------------------------------------
# EPO: entropy bonus + entropy smoothing with an adaptive phase weight (§6)

EPO_PENALTY_MODES = ("token", "seq")


def epo_phase_weight(epoch: int, total_epochs: int = 150) -> float:
    """EPO's adaptive phase weight beta(e) on the smoothing penalty (§6.1.4), as released.

        e <= E//2:  1 - 0.2 (1 - exp(-2 e / (E//2)))      slow decay 1.0 -> 0.8
        e >  E//2:  0.8 exp(-3 (e - E//2) / (E - E//2))   fast decay 0.8 -> 0.04

    `epoch` is clamped to [0, E]; E <= 0 gives 1.0. E = 150 is hard-coded in the released actor,
    pass the run's own length to scale the schedule. Note the jump 0.827 -> 0.8 right after E//2
    (the released formula is discontinuous there).
    """
    if total_epochs <= 0:
        return 1.0
    e = max(0, min(int(epoch), int(total_epochs)))
    half = total_epochs // 2
    if e <= half:
        return 1.0 if half == 0 else 1.0 - 0.2 * (1.0 - math.exp(-2.0 * e / half))
    return 0.8 * math.exp(-3.0 * (e - half) / (total_epochs - half))


def _epo_band_inputs(entropy: torch.Tensor, ref_entropy: torch.Tensor, mask: torch.Tensor,
                     mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(entropy compared with the band [B, T], reference H-bar [B, 1], tokens that get a penalty)."""
    if mode not in EPO_PENALTY_MODES:
        raise ValueError(f"unknown EPO penalty mode {mode!r}; expected one of {EPO_PENALTY_MODES}")
    if entropy.dim() != 2 or mask.shape != entropy.shape or ref_entropy.shape != entropy.shape[:1]:
        raise ValueError(f"expected entropy and mask [B, T] and ref_entropy [B], got {tuple(entropy.shape)}, "
                         f"{tuple(mask.shape)}, {tuple(ref_entropy.shape)}")
    m = mask.bool()
    ref = ref_entropy.detach().to(entropy.dtype).unsqueeze(-1)
    # A turn without history (H-bar <= 0 or NaN) has no band to leave: no penalty.
    active = m & torch.isfinite(ref) & (ref > 0)
    h = torch.where(m, entropy, torch.zeros_like(entropy))
    if mode == "seq":
        row_mean = h.sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1).to(h.dtype)
        h = row_mean.expand_as(entropy)
    return h, torch.where(torch.isfinite(ref) & (ref > 0), ref, torch.ones_like(ref)), active


def epo_smoothing_penalty(
    entropy: torch.Tensor,
    ref_entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    kappa_lo: float = 0.5,
    kappa_hi: float = 1.5,
    penalty: float = 0.1,
    mode: str = "token",
    faithful: bool = False,
) -> torch.Tensor:
    """EPO's entropy-smoothing penalty p [B, T] (§6.1.3); 0 on masked tokens.

    `entropy` [B, T] token entropies of the current policy, `ref_entropy` [B] = H-bar_t, the
    historical mean entropy of the row's turn index (rows with H-bar <= 0 / NaN get p = 0).
    mode "token" compares each token's H with the band (kappa_lo H-bar, kappa_hi H-bar); "seq"
    compares the row's masked mean entropy and gives every token of the row the row's penalty.

    faithful=True, the released code: p = 0 strictly inside the band, `penalty` outside. p is
    piecewise constant, so it shifts the loss value but its gradient is zero everywhere - the
    released EPO trains like PPO/GRPO + entropy bonus (§6.1 warning). Returned without a graph.

    faithful=False (our default, not the authors'): a differentiable, scale-free hinge,
        p = penalty * (relu(kappa_lo H-bar - H) + relu(H - kappa_hi H-bar)) / H-bar,
    zero inside the band and growing linearly with the relative distance outside it. Minimising
    +p pushes too-low entropy up and too-high entropy down, into the band. Its value differs from
    the released one (it is 0 at the band edges, penalty * 0.1 at 10 % of H-bar beyond them).

    Deviation in seq mode: the row mean is over masked tokens (the released code averages over
    padding too).
    """
    h, ref, active = _epo_band_inputs(entropy, ref_entropy, mask, mode)
    lo, hi = kappa_lo * ref, kappa_hi * ref
    if faithful:
        with torch.no_grad():
            inside = (h > lo) & (h < hi)
            p = (~inside).to(entropy.dtype) * penalty
    else:
        p = penalty * (torch.relu(lo - h) + torch.relu(h - hi)) / ref
    return torch.where(active, p, torch.zeros_like(p))


def epo_regularizer(
    entropy: torch.Tensor,
    ref_entropy: torch.Tensor,
    mask: torch.Tensor,
    agg: str,
    *,
    entropy_coef: float,
    smooth_coef: float,
    phase_weight: float = 1.0,
    **penalty_kwargs: Any,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The EPO term to ADD to the policy loss (§6.1): -c_H * (agg(H) - lambda_s * beta * agg(p)).

    It replaces the plain entropy bonus -c_H * agg(H) (do not add both). `entropy_coef` = c_H,
    `smooth_coef` = lambda_s, `phase_weight` = beta(e) from `epo_phase_weight` (1.0 when phase
    weighting is off); `penalty_kwargs` go to `epo_smoothing_penalty` (kappa_lo, kappa_hi, penalty,
    mode, faithful). The released actor only applies the smoothing when some row of the
    micro-batch has turn index >= max_step // 2 (§6.1.3); that gate is the caller's (pass
    smooth_coef=0 to switch the smoothing off).
    Stats: entropy (agg H), epo_penalty (agg p), epo_out_of_band_frac (share of masked tokens
    outside the band), epo_phase_weight.
    """
    ent = agg_loss(entropy, mask, agg)
    p = epo_smoothing_penalty(entropy, ref_entropy, mask, **penalty_kwargs)
    pen = agg_loss(p, mask, agg)
    term = -entropy_coef * (ent - smooth_coef * phase_weight * pen)
    with torch.no_grad():
        band_kwargs = {**penalty_kwargs, "faithful": True, "penalty": 1.0}
        outside = epo_smoothing_penalty(entropy, ref_entropy, mask, **band_kwargs)
        stats = {"entropy": ent.item(), "epo_penalty": pen.item(),
                 "epo_out_of_band_frac": masked_mean(outside, mask).item(), "epo_phase_weight": float(phase_weight)}
    return term, stats


# ------------------------------------------------------------------------------------------------
# PPO critic


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip: float | None = 0.2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """verl's clipped value loss for a PPO critic, one value per row ([B] each).

        v_clip = clip(v, v_old - c, v_old + c)
        loss = 0.5 * mean_b max((v - R)^2, (v_clip - R)^2)

    The max keeps the update pessimistic: a value that moved more than c away from v_old gets no
    gradient if moving it did not help. `clip=None` gives 0.5 * mean (v - R)^2. old_values and
    returns are constants. Stats: vf_clip_frac (share of rows where the clipped term is larger),
    explained_variance = 1 - Var(R - v) / (Var(R) + 1e-5) (verl's critic metric; population
    variances so one row does not give NaN), value_mean, return_mean.
    """
    if values.shape != old_values.shape or values.shape != returns.shape:
        raise ValueError(f"values, old_values and returns must share a shape, got {tuple(values.shape)}, "
                         f"{tuple(old_values.shape)}, {tuple(returns.shape)}")
    if clip is not None and clip <= 0:
        raise ValueError(f"value clip must be > 0 (or None to disable it), got {clip}")
    old = old_values.detach().to(values.dtype)
    ret = returns.detach().to(values.dtype)
    err = (values - ret) ** 2
    if clip is None:
        losses, clipped = err, torch.zeros_like(err, dtype=torch.bool)
    else:
        v_clip = torch.minimum(torch.maximum(values, old - clip), old + clip)
        err_clip = (v_clip - ret) ** 2
        losses, clipped = torch.maximum(err, err_clip), err_clip > err
    loss = 0.5 * losses.mean()
    with torch.no_grad():
        v, r = values.detach().float(), ret.float()
        resid_var = (r - v).var(unbiased=False) if r.numel() else torch.tensor(0.0)
        ret_var = r.var(unbiased=False) if r.numel() else torch.tensor(0.0)
        stats = {"vf_clip_frac": clipped.float().mean().item() if clipped.numel() else 0.0,
                 "explained_variance": (1.0 - resid_var / (ret_var + 1e-5)).item(),
                 "value_mean": v.mean().item() if v.numel() else 0.0,
                 "return_mean": r.mean().item() if r.numel() else 0.0}
    return loss, stats
