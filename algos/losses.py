"""Token-level policy-loss primitives (algorithms.md §0.4 - §0.6), in torch.

Shapes: `[B, T]` per-token tensors (B rows, T response positions) with a `[B, T]` loss mask
(1 = the token is trained on). Advantages are per row `[B]` or per token `[B, T]`.

    agg_loss              the four verl aggregation modes (§0.4)
    ppo_clip_token_loss   per-token clipped surrogate with dual clip, from a log-ratio (§0.5)
    ppo_clip_loss         ratio from log-probs + clipping + aggregation + logging stats (§0.5)
    low_var_kl            k3 KL estimator to the reference policy, per token (§0.6)
    entropy_from_logits   full-vocabulary token entropy (§0.6)
"""

from __future__ import annotations

import torch

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


def ppo_clip_token_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_ratio_c: float | None = 3.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token PPO clipped loss with dual clip (§0.5), from log(rho) = logp - old_logp.

        rho = exp(clamp(log_ratio, -20, 20))
        l1 = -A * rho;  l2 = -A * clip(rho, 1 - clip_low, 1 + clip_high);  l_clip = max(l1, l2)
        dual clip where A < 0:  l = min(l_clip, -A * c)

    `advantages` broadcasts against `log_ratio` ([B] is treated as [B, 1]). `clip_ratio_c=None`
    disables the dual clip. Returns (loss, clipped, dual_clipped, rho): `clipped` marks l2 > l1,
    `dual_clipped` marks tokens where the dual clip bound was taken.
    """
    if clip_ratio_c is not None and clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1.0 (or None to disable the dual clip), got {clip_ratio_c}")
    adv = advantages.detach()
    if adv.dim() == 1 and log_ratio.dim() == 2:
        adv = adv.unsqueeze(-1)
    ratio = torch.exp(log_ratio.clamp(-20.0, 20.0))
    loss1 = -adv * ratio
    loss2 = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(loss1, loss2)
    clipped = loss2 > loss1
    if clip_ratio_c is None:
        return loss, clipped, torch.zeros_like(clipped), ratio
    loss3 = -adv * clip_ratio_c
    dual_clipped = (adv < 0) & (loss3 < loss)
    loss = torch.where(adv < 0, torch.minimum(loss, loss3), loss)
    return loss, clipped, dual_clipped, ratio


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_ratio_c: float | None = 3.0,
    agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """The vanilla (verl) PPO policy loss (§0.5), aggregated with `agg` (§0.4).

    logp, old_logp, mask: [B, T]; advantages: [B] (per row, broadcast to its tokens) or [B, T].
    `clip_high > clip_low` is DAPO's clip-higher. old_logp and advantages are treated as constants.
    Returns (loss, stats) with stats over the masked tokens: clip_frac (share with l2 > l1),
    dual_clip_frac, ratio_mean / ratio_max / ratio_min (1.0 when no token is masked in), and
    approx_kl = mean(old_logp - logp).
    """
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"logp, old_logp and mask must share a shape, got {tuple(logp.shape)}, "
                         f"{tuple(old_logp.shape)}, {tuple(mask.shape)}")
    if advantages.shape not in (logp.shape, logp.shape[:1]):
        raise ValueError(f"advantages must be [B] or [B, T] = {tuple(logp.shape)}, got {tuple(advantages.shape)}")
    log_ratio = logp - old_logp.detach()
    loss_mat, clipped, dual_clipped, ratio = ppo_clip_token_loss(
        log_ratio, advantages.to(logp.dtype), clip_low, clip_high, clip_ratio_c)
    loss = agg_loss(loss_mat, mask, agg)

    with torch.no_grad():
        m = mask.bool()
        ratio_in = ratio[m]
        stats = {
            "clip_frac": masked_mean(clipped.to(logp.dtype), mask).item(),
            "dual_clip_frac": masked_mean(dual_clipped.to(logp.dtype), mask).item(),
            "ratio_mean": ratio_in.mean().item() if ratio_in.numel() else 1.0,
            "ratio_max": ratio_in.max().item() if ratio_in.numel() else 1.0,
            "ratio_min": ratio_in.min().item() if ratio_in.numel() else 1.0,
            "approx_kl": masked_mean(-log_ratio, mask).item(),
        }
    return loss, stats


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
