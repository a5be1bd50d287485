"""Prefix-shared forward (algorithms.md §15, Prefix Grouper): encode each distinct prompt once.

`shared_prefix_logprobs` is a drop-in replacement for `agents.forward.sequence_logprobs` (same
arguments, same return contract, same numbers to float rounding, gradients included): rows whose
prompt ids are identical — the G rollouts of a task group at turn 0, or any identical-prompt rows
with ``history_length=0`` — share one forward of the prompt.

Layout ("KV-cache" variant of Prefix Grouper)
---------------------------------------------
For the K distinct shared prompts ``p_k`` (length ``P_k``) and the N rows ``j`` that use them:

1. **Prefix pass**: one batched forward of ``p_k[:-1]`` (right-padded to ``max P_k - 1``, 2-D
   attention mask, positions ``0..P_k-2``) with ``use_cache=True`` into a fresh ``DynamicCache``.
   It runs with grad when the caller has grad enabled: the cached K/V tensors are ordinary autograd
   tensors, so the gradient of every response token flows back through them into the prefix.
2. **Expand**: ``cache.batch_select_indices(group_of_row)`` gathers the prefix K/V for each row
   (the ``batch_repeat_cat`` of Prefix Grouper; its backward sums the G row gradients into the
   shared prefix).
3. **Suffix pass**: one batched forward of ``[p_k[-1]] + response_j[:-1]`` (right-padded), positions
   continuing at ``P_k - 1``, 2-D attention mask ``[prefix mask of p_k | own response mask]``. The
   last prompt token is fed here rather than in the prefix pass, so every logit that is needed comes
   out of this pass (column t predicts response token t; the "include_prefix_last" of §15) and the
   prefix pass needs no LM head except the one position transformers always computes.

Why this layout and not the packed one of §15 (one row ``[prefix, s_1..s_G]`` with a custom 4-D
mask)? Both are exact. On CPU with sdpa/eager attention a custom 4-D mask cannot skip masked
blocks, so a packed row pays for the full ``(P + ΣS)²`` score matrix, while the cache layout pays
``P² + ΣS·(P + S)`` — the §15 attention proxy; its extra cost is materialising the repeated prefix
K/V (``N·P·kv_dim`` per layer), which is small next to the linear layers. The packed variant also
needs a per-model mask (float additive for eager, bool for sdpa) and logits at scattered positions,
while the cache variant uses only the public 2-D ``attention_mask`` / ``position_ids`` / ``cache``
path that generation uses, so it works unchanged for sdpa and eager attention and through peft.
Measured with a prototype of the packed variant (tiny Qwen2, sdpa, 1 thread, forward+backward,
8 prompts x G=8 unless noted; seconds plain / cache / packed): P=300, S=16: 3.52 / 0.59 / 0.83;
P=186, S=6: 1.69 / 0.31 / 0.34; P=300, S=128, 2 prompts: 1.17 / 0.47 / 0.95 — the cache layout
wins everywhere and its lead grows with G·S. `benchmarks/prefix_bench.py` measures plain vs shared.

Both passes pad to the longest prompt / response of the call, so mixing very different prompt
lengths in one call wastes compute (`algos.batching.micro_batches` sorts rows by prompt length and prompt).

VLM batches (pixel inputs given) take the plain `sequence_logprobs` path for every row: identical
prompt ids do not mean identical prompts there (an image's pad tokens are the same for any image
of that size), and the prefix pass would need the M-RoPE positions of each shared prompt.

Rows not shared go through `sequence_logprobs` unchanged: prompts used by fewer than `min_share`
rows (counting only rows with a non-empty response), prompts of one token, and rows with empty
responses. Models with sliding-window / chunked / linear-attention layers (``config.layer_types``
not all ``"full_attention"``) also fall back to the plain path for every row, since the cropping
caches of those layers are not exercised here.

The same happens under activation (gradient) checkpointing in training mode with grad enabled,
where transformers drops the KV cache. Supported: decoder-only transformers causal LMs whose
attention takes the standard 2-D mask + ``DynamicCache`` (Llama/Qwen2/Qwen3/Mistral-style), with
sdpa or eager attention (tested: Qwen2 with both, and through a peft LoRA wrapper; other
architectures are expected to work but untested — compare once against `sequence_logprobs`).

Costs: the linear-layer token count drops from ``Σ(P + S)`` to ``Σ_groups (P + ΣS)`` (see
`prefix_share_stats`); the attention-score count by the §15 attention proxy. In the trainer the
gain requires that a micro-batch actually holds several rows of the same prompt: the trainer's
`algos.batching.minibatches(..., by_prompt=True)` and `micro_batches` keep them together.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from agents.forward import base_model, cache_kwarg, new_cache, sequence_logprobs, suppressed_token_ids
from agents.lm_head import head_inputs, selective_logprobs
from algos.batching import prompt_groups

__all__ = [
    "shared_prefix_logprobs",
    "prefix_share_stats",
    "cost_proxy",
    "prompt_groups",
]


# --------------------------------------------------------------------------------------------
# grouping (rows by identical prompt: `algos.batching.prompt_groups`)


def _split_rows(prompt_ids_list, response_ids_list, min_share: int) -> tuple[list[list[int]], list[int]]:
    """(shared groups of row indices, plain row indices)."""
    shared, plain = [], []
    for idx in prompt_groups(prompt_ids_list):
        if len(prompt_ids_list[idx[0]]) < 2:
            plain.extend(idx)
            continue
        live = [i for i in idx if len(response_ids_list[i]) > 0]
        if len(live) >= max(int(min_share), 1):
            shared.append(live)
            plain.extend(i for i in idx if len(response_ids_list[i]) == 0)
        else:
            plain.extend(idx)
    return shared, sorted(plain)


def _supports_sharing(model) -> bool:
    """False for models the cache layout cannot serve exactly (they take the plain path)."""
    base = base_model(model)
    types = getattr(getattr(base, "config", None), "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        return False
    # transformers drops the cache under activation checkpointing (training mode with grad enabled):
    # the suffix pass would silently lose its prefix.
    if torch.is_grad_enabled() and any(getattr(m, "gradient_checkpointing", False) and m.training
                                       for m in base.modules()):
        return False
    return True


# --------------------------------------------------------------------------------------------
# the forward


def shared_prefix_logprobs(
    model,
    prompt_ids_list: Sequence[Sequence[int]],
    response_ids_list: Sequence[Sequence[int]],
    pad_id: int,
    return_entropy: bool = False,
    min_share: int = 2,
    pixel_values: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
):
    """`agents.forward.sequence_logprobs` with each distinct shared prompt encoded once.

    Returns ``(logp, mask, entropy)`` exactly as `sequence_logprobs`: ``logp`` float32 ``[B, T]`` in
    input row order (0 where masked), ``mask`` bool ``[B, T]``, ``entropy`` ``[B, T]`` or None;
    ``T`` is the longest response. Runs with gradients when grad is enabled. Prompts used by at
    least `min_share` rows (with non-empty responses) are shared; the other rows take the plain path,
    and so does a batch with pixel inputs (VLM rows; see the module docstring).
    """
    if pixel_values is not None:
        return sequence_logprobs(model, prompt_ids_list, response_ids_list, pad_id, return_entropy,
                                 pixel_values=pixel_values, image_grid_thw=image_grid_thw)
    B = len(prompt_ids_list)
    if B != len(response_ids_list):
        raise ValueError("prompt_ids_list and response_ids_list differ in length")
    if B == 0 or not _supports_sharing(model):
        return sequence_logprobs(model, prompt_ids_list, response_ids_list, pad_id, return_entropy)
    if min(len(p) for p in prompt_ids_list) < 1:
        raise ValueError("every prompt needs at least one token (the first response token is predicted from it)")
    shared, plain = _split_rows(prompt_ids_list, response_ids_list, min_share)
    if not shared:
        return sequence_logprobs(model, prompt_ids_list, response_ids_list, pad_id, return_entropy)

    device = next(model.parameters()).device
    T = max(len(r) for r in response_ids_list)
    parts: list[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    rows_s, logp_s, mask_s, ent_s = _shared_forward(model, prompt_ids_list, response_ids_list, shared, pad_id,
                                                     return_entropy, device)
    parts.append((rows_s, logp_s, mask_s, ent_s))
    if plain:
        lp, mk, en = sequence_logprobs(model, [prompt_ids_list[i] for i in plain],
                                       [response_ids_list[i] for i in plain], pad_id, return_entropy)
        parts.append((plain, lp, mk, en))

    def fit(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, T - x.shape[1])) if x.shape[1] < T else x

    order = [i for rows, *_ in parts for i in rows]
    inv = torch.empty(B, dtype=torch.long)
    inv[torch.as_tensor(order, dtype=torch.long)] = torch.arange(B)
    inv = inv.to(device)
    logp = torch.cat([fit(p[1]) for p in parts]).index_select(0, inv)
    mask = torch.cat([fit(p[2]) for p in parts]).index_select(0, inv)
    entropy = torch.cat([fit(p[3]) for p in parts]).index_select(0, inv) if return_entropy else None
    return logp, mask, entropy


def _shared_forward(model, prompt_ids_list, response_ids_list, groups: list[list[int]], pad_id: int,
                    return_entropy: bool, device):
    """Prefix pass over the distinct prompts, then one suffix pass over their rows."""
    K = len(groups)
    prompts = [list(prompt_ids_list[g[0]]) for g in groups]
    pre_lens = [len(p) - 1 for p in prompts]  # tokens in the prefix pass (>= 1)
    Pm = max(pre_lens)
    pre_ids = torch.full((K, Pm), pad_id, dtype=torch.long)
    pre_attn = torch.zeros((K, Pm), dtype=torch.long)
    for k, p in enumerate(prompts):
        pre_ids[k, : len(p) - 1] = torch.as_tensor(p[:-1], dtype=torch.long)
        pre_attn[k, : len(p) - 1] = 1
    pre_pos = torch.arange(Pm, dtype=torch.long).unsqueeze(0).expand(K, Pm)
    pre_ids, pre_attn, pre_pos = pre_ids.to(device), pre_attn.to(device), pre_pos.to(device)

    cache = new_cache(model)
    model(input_ids=pre_ids, attention_mask=pre_attn, position_ids=pre_pos, use_cache=True,
          logits_to_keep=1, **{cache_kwarg(model): cache})

    rows = [i for g in groups for i in g]
    group_of = [k for k, g in enumerate(groups) for _ in g]
    N = len(rows)
    r_lens = [len(response_ids_list[i]) for i in rows]
    Rm = max(r_lens)
    ids = torch.full((N, Rm), pad_id, dtype=torch.long)
    tgt = torch.full((N, Rm), pad_id, dtype=torch.long)
    for n, (i, k) in enumerate(zip(rows, group_of)):
        r = list(response_ids_list[i])
        ids[n, : len(r)] = torch.as_tensor([prompts[k][-1]] + r[:-1], dtype=torch.long)
        tgt[n, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    g_t = torch.as_tensor(group_of, dtype=torch.long)
    ar = torch.arange(Rm, dtype=torch.long).unsqueeze(0)
    mask = ar < torch.as_tensor(r_lens, dtype=torch.long).unsqueeze(1)  # [N, Rm]
    pos = torch.as_tensor(pre_lens, dtype=torch.long)[g_t].unsqueeze(1) + ar  # continues at P_k - 1
    attn = torch.cat([pre_attn.cpu()[g_t], mask.long()], dim=1)  # [N, Pm + Rm]
    ids, tgt, mask, pos, attn = (t.to(device) for t in (ids, tgt, mask, pos, attn))

    cache.batch_select_indices(g_t.to(device))
    with head_inputs(model) as seen:  # no logits here: the head runs on response positions below
        model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **{cache_kwarg(model): cache})
    hidden = seen[-1]  # [N, Rm, H]; column t predicts token t
    at = mask.nonzero(as_tuple=True)
    tok_logp, tok_ent = selective_logprobs(model, hidden[at], tgt[at], suppressed_token_ids(model), return_entropy)
    logp = tok_logp.new_zeros((N, Rm)).index_put(at, tok_logp)
    entropy = None
    if return_entropy:
        entropy = tok_ent.new_zeros((N, Rm)).index_put(at, tok_ent)
    return rows, logp, mask, entropy


# --------------------------------------------------------------------------------------------
# cost accounting


def cost_proxy(P: int, S: int, G: int) -> tuple[float, float]:
    """§15 cost ratios of one group (shared / plain): (linear-layer tokens, attention-score entries)."""
    lin = (P + G * S) / (G * (P + S))
    att = (P * P + G * S * (P + S)) / (G * (P + S) ** 2)
    return lin, att


def prefix_share_stats(prompt_ids_list: Sequence[Sequence[int]], response_ids_list: Sequence[Sequence[int]],
                       min_share: int = 2) -> dict[str, Any]:
    """Token and attention-score counts of a batch in the plain vs the prefix-shared layout.

    Generalises the §15 proxies to a batch: per distinct prompt of length P used by rows with
    responses S_j, plain counts ``Σ_j (P + S_j)`` tokens and ``Σ_j (P + S_j)²`` score entries, shared
    counts ``P + Σ_j S_j`` and ``P² + Σ_j S_j (P + S_j)``; prompts used by fewer than `min_share`
    rows count as plain in both (as `shared_prefix_logprobs` routes them).
    """
    shared, plain = _split_rows(prompt_ids_list, response_ids_list, min_share)
    p_len = [len(p) for p in prompt_ids_list]
    r_len = [len(r) for r in response_ids_list]
    plain_tok = sum(p + r for p, r in zip(p_len, r_len))
    plain_att = sum((p + r) ** 2 for p, r in zip(p_len, r_len))
    sh_tok = sum(p_len[i] + r_len[i] for i in plain)
    sh_att = sum((p_len[i] + r_len[i]) ** 2 for i in plain)
    for g in shared:
        P = p_len[g[0]]
        sh_tok += P + sum(r_len[i] for i in g)
        sh_att += P * P + sum(r_len[i] * (P + r_len[i]) for i in g)
    return {
        "rows": len(p_len),
        "distinct_prompts": len(prompt_groups(prompt_ids_list)),
        "shared_groups": len(shared),
        "shared_rows": sum(len(g) for g in shared),
        "plain_tokens": plain_tok,
        "shared_tokens": sh_tok,
        "token_ratio": sh_tok / plain_tok if plain_tok else 1.0,
        "plain_attn": plain_att,
        "shared_attn": sh_att,
        "attn_ratio": sh_att / plain_att if plain_att else 1.0,
    }
