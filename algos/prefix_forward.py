"""Prefix-shared forward (algorithms.md §15, Prefix Grouper): encode a prompt prefix once for many rows.

`shared_prefix_logprobs` is a drop-in replacement for `agents.forward.sequence_logprobs` (same
arguments, same return contract, same numbers to float rounding, gradients included). Two kinds of
rows share a prefix in agent training:

* **identical prompts**: the G rollouts of a task group at turn 0, or any identical-prompt rows with
  ``history_length=0``: the whole prompt is shared;
* **a common instruction**: every row of an env starts with the same system prompt and rules
  (~250 of ~370 tokens for Sokoban), and only the observation after it differs: SFT rows, later
  turns, rows of different tasks.

`layout` groups a call's rows both ways and keeps whichever encodes fewer tokens (or none, when
sharing would save less than a tenth): each group is a set of rows and the number ``c`` of leading prompt
tokens they all share.

Layout ("KV-cache" variant of Prefix Grouper)
---------------------------------------------
For the K groups, with shared lengths ``c_k``, and the N rows ``j`` in them:

1. **Prefix pass**: one batched forward of each group's first ``c_k`` prompt tokens (right-padded
   to ``max c_k``, 2-D attention mask, positions ``0..c_k-1``) with ``use_cache=True`` into a fresh
   cache. It runs with grad when the caller has grad enabled: the cached K/V tensors are ordinary
   autograd tensors, so the gradient of every response token flows back through them into the prefix.
2. **Expand**: ``cache.batch_select_indices(group_of_row)`` gathers the prefix K/V for each row
   (the ``batch_repeat_cat`` of Prefix Grouper; its backward sums the row gradients into the
   shared prefix).
3. **Suffix pass**: one batched forward of ``prompt_j[c_k:] + response_j[:-1]`` (right-padded),
   positions continuing at ``c_k``, 2-D attention mask ``[prefix mask of group k | own mask]``.
   ``c_k`` is at most the prompt's length minus one, so every logit that is needed comes out of
   this pass (the "include_prefix_last" of §15) and the prefix pass needs no LM head except the
   one position transformers always computes.

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

Rows not shared go through `sequence_logprobs` unchanged: rows of groups smaller than `min_share`
(counting only rows with a non-empty response), prompts of one token, and rows with empty
responses. Models with sliding-window / chunked / linear-attention layers (``config.layer_types``
not all ``"full_attention"``) also fall back to the plain path for every row, since the cropping
caches of those layers are not exercised here.

Activation (gradient) checkpointing: transformers drops the KV cache of a checkpointed layer,
because the layer's recompute in backward would append to it a second time. Here the prefix pass
runs unchecked (it is one row per group) and the suffix pass gets a cache that only reads
(`_PrefixCache`): its layers may then keep it under checkpointing (``_can_checkpoint_with_cache``;
transformers 5.25 has it), so the recompute sees the same prefix. Where that flag does not exist, or
checkpointing is reentrant (its backward would not reach the prefix), every row takes the plain path.

Supported: decoder-only transformers causal LMs whose attention takes the standard 2-D mask +
``DynamicCache`` (Llama/Qwen2/Qwen3/Mistral-style), with sdpa or eager attention (tested: Qwen2
with both and through a peft LoRA wrapper, SmolLM2 (Llama) in tests/test_lm_head.py; other
architectures are expected to work but untested — compare once against `sequence_logprobs`).

Costs: the linear-layer token count drops from ``Σ_j (P_j + S_j)`` to
``Σ_groups (c + Σ_j (P_j - c + S_j))`` (see `prefix_share_stats`); the attention-score count by the
§15 attention proxy. In the trainer the identical-prompt gain requires that a micro-batch actually
holds several rows of the same prompt: `algos.batching.minibatches(..., by_prompt=True)` and
`micro_batches` keep them together.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from agents.forward import (adapter_autocast, base_model, cache_kwarg, new_cache, sequence_logprobs,
                            suppressed_token_ids)
from agents.lm_head import head_inputs, selective_logprobs
from algos.batching import prompt_groups

__all__ = [
    "shared_prefix_logprobs",
    "layout",
    "prefix_share_stats",
    "cost_proxy",
    "prompt_groups",
]

#: A group: the rows that share a prefix, and how many leading prompt tokens they share.
Group = tuple[list[int], int]

#: Share only if it saves at least this fraction of the tokens: the second model call and the
#: repeated prefix K/V cost about as much as a few percent of tokens (the tiny model's compact
#: prompt shares 8 of ~260 tokens per row, and its SFT step was no faster shared).
MIN_SAVING = 0.1


# --------------------------------------------------------------------------------------------
# grouping


def _common_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all of `seqs` share."""
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def _by_identical_prompt(prompts, responses, min_share: int) -> list[Group]:
    groups = []
    for idx in prompt_groups(prompts):
        live = [i for i in idx if len(responses[i]) > 0]
        if len(prompts[idx[0]]) >= 2 and len(live) >= min_share:
            groups.append((live, len(prompts[idx[0]])))
    return groups


def _by_common_prefix(prompts, responses, min_share: int) -> list[Group]:
    live = [i for i, r in enumerate(responses) if len(r) > 0]
    if len(live) < min_share:
        return []
    c = _common_length([prompts[i] for i in live])
    # the forward feeds each row's last prompt token with its response: c=1 shares nothing then
    return [(live, c)] if c >= 2 and min(len(prompts[i]) for i in live) >= 2 else []


def _tokens(prompts, responses, groups: list[Group]) -> int:
    """Tokens through the linear layers (unpadded): each group's shared part once, the rest per row."""
    grouped = {i for rows, _ in groups for i in rows}
    total = sum(len(p) + len(r) for i, (p, r) in enumerate(zip(prompts, responses)) if i not in grouped)
    for rows, c in groups:
        total += c + sum(len(prompts[i]) - c + len(responses[i]) for i in rows)
    return total


def layout(prompt_ids_list: Sequence[Sequence[int]], response_ids_list: Sequence[Sequence[int]],
           min_share: int = 2) -> list[Group]:
    """The sharing groups of a batch: ``[(rows, shared length), ...]``; rows in none take the plain path.

    Rows are grouped by identical prompt and, separately, all together by their common prefix; the
    grouping that puts fewer tokens through the model wins if it saves at least `MIN_SAVING` of
    them, else none does. The shared length counts whole shared prompts (the forward feeds their
    last token with the response, see the module docstring).
    """
    min_share = max(int(min_share), 1)
    plain = _tokens(prompt_ids_list, response_ids_list, [])
    best, best_tokens = [], plain * (1 - MIN_SAVING)
    for groups in (_by_identical_prompt(prompt_ids_list, response_ids_list, min_share),
                   _by_common_prefix(prompt_ids_list, response_ids_list, min_share)):
        tokens = _tokens(prompt_ids_list, response_ids_list, groups)
        if groups and tokens <= best_tokens:
            best, best_tokens = groups, tokens
    return best


# --------------------------------------------------------------------------------------------
# the cache and checkpointing


#: Whether this transformers' DynamicCache keeps per-layer objects, which `_PrefixCache` reads when
#: frozen (transformers >= 4.56); older ones keep the growing cache and cannot share under checkpointing.
_FREEZABLE = hasattr(DynamicCache(), "layers")


class _PrefixCache(DynamicCache):
    """A DynamicCache that, once `frozen`, returns prefix + new states and stores nothing.

    The suffix pass then leaves the cache as the prefix pass made it, so a checkpointed layer's
    recompute in backward reads the same prefix as its forward did.
    """

    frozen = False

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        if not self.frozen:
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)
        layer = self.layers[layer_idx]
        return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)


def _checkpointing(model) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """(the modules that checkpoint in this call, the decoder layers among them that could keep a
    read-only cache); both empty without grad or outside training mode."""
    if not torch.is_grad_enabled():
        return [], []
    active = [m for m in base_model(model).modules() if getattr(m, "gradient_checkpointing", False) and m.training]
    return active, [m for m in active if hasattr(type(m), "_can_checkpoint_with_cache")]


def _supports_sharing(model) -> bool:
    """False for models the cache layout cannot serve exactly (they take the plain path)."""
    base = base_model(model)
    types = getattr(getattr(base, "config", None), "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        return False
    active, layers = _checkpointing(model)
    if not active:
        return True
    if not layers or not _FREEZABLE:
        return False  # older transformers: a checkpointed layer drops any cache
    for m in layers:
        fn = getattr(m, "_gradient_checkpointing_func", None)
        if not (isinstance(fn, functools.partial) and fn.keywords.get("use_reentrant") is False):
            return False  # reentrant checkpointing computes no gradient for the cached prefix
    return True


_MISSING = object()


@contextmanager
def _layer_attrs(layers: list[torch.nn.Module], name: str, value: Any) -> Iterator[None]:
    """Set `name` on each layer for the duration, then put back what the instance had."""
    saved = [vars(m).get(name, _MISSING) for m in layers]
    for m in layers:
        setattr(m, name, value)
    try:
        yield
    finally:
        for m, old in zip(layers, saved):
            if old is _MISSING:
                delattr(m, name)
            else:
                setattr(m, name, old)


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
    """`agents.forward.sequence_logprobs` with shared prompt prefixes encoded once.

    Returns ``(logp, mask, entropy)`` exactly as `sequence_logprobs`: ``logp`` float32 ``[B, T]`` in
    input row order (0 where masked), ``mask`` bool ``[B, T]``, ``entropy`` ``[B, T]`` or None;
    ``T`` is the longest response. Runs with gradients when grad is enabled. Rows share as
    `layout` groups them (groups of at least `min_share` rows with non-empty responses); the other
    rows take the plain path, and so does a batch with pixel inputs (VLM rows; see the module docstring).
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
    groups = layout(prompt_ids_list, response_ids_list, min_share)
    if not groups:
        return sequence_logprobs(model, prompt_ids_list, response_ids_list, pad_id, return_entropy)

    device = next(model.parameters()).device
    T = max(len(r) for r in response_ids_list)
    grouped = {i for rows, _ in groups for i in rows}
    plain = [i for i in range(B) if i not in grouped]
    parts = [_shared_forward(model, prompt_ids_list, response_ids_list, groups, pad_id, return_entropy, device)]
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


def _shared_forward(model, prompt_ids_list, response_ids_list, groups: list[Group], pad_id: int,
                    return_entropy: bool, device):
    """Prefix pass over the groups' shared tokens, then one suffix pass over their rows."""
    K = len(groups)
    # Each row feeds at least its last prompt token in the suffix pass, which predicts its first response token.
    pre_lens = [min([c] + [len(prompt_ids_list[i]) - 1 for i in rows]) for rows, c in groups]
    Pm = max(pre_lens)
    pre_ids = torch.full((K, Pm), pad_id, dtype=torch.long)
    pre_attn = torch.zeros((K, Pm), dtype=torch.long)
    for k, ((rows, _), c) in enumerate(zip(groups, pre_lens)):
        pre_ids[k, :c] = torch.as_tensor(list(prompt_ids_list[rows[0]][:c]), dtype=torch.long)
        pre_attn[k, :c] = 1
    pre_pos = torch.arange(Pm, dtype=torch.long).unsqueeze(0).expand(K, Pm)
    pre_ids, pre_attn, pre_pos = pre_ids.to(device), pre_attn.to(device), pre_pos.to(device)

    checkpointed, layers = _checkpointing(model)
    cache = new_cache(model, _PrefixCache)
    # one row per group: no need to checkpoint
    with _layer_attrs(checkpointed, "gradient_checkpointing", False), adapter_autocast(model):
        model(input_ids=pre_ids, attention_mask=pre_attn, position_ids=pre_pos, use_cache=True,
              logits_to_keep=1, **{cache_kwarg(model): cache})

    rows = [i for g, _ in groups for i in g]
    group_of = [k for k, (g, _) in enumerate(groups) for _ in g]
    N = len(rows)
    tails = [list(prompt_ids_list[i][pre_lens[k]:]) for i, k in zip(rows, group_of)]  # >= 1 token each
    r_lens = [len(response_ids_list[i]) for i in rows]
    Sm = max(len(t) + r - 1 for t, r in zip(tails, r_lens))
    ids = torch.full((N, Sm), pad_id, dtype=torch.long)
    for n, (i, tail) in enumerate(zip(rows, tails)):
        fed = tail + list(response_ids_list[i][:-1])
        ids[n, : len(fed)] = torch.as_tensor(fed, dtype=torch.long)
    g_t = torch.as_tensor(group_of, dtype=torch.long)
    s_lens = torch.as_tensor([len(t) + r - 1 for t, r in zip(tails, r_lens)], dtype=torch.long)
    ar_s = torch.arange(Sm, dtype=torch.long).unsqueeze(0)
    pos = torch.as_tensor(pre_lens, dtype=torch.long)[g_t].unsqueeze(1) + ar_s  # continues at c_k
    attn = torch.cat([pre_attn.cpu()[g_t], (ar_s < s_lens.unsqueeze(1)).long()], dim=1)  # [N, Pm + Sm]

    Rm = max(r_lens)
    ar_r = torch.arange(Rm, dtype=torch.long).unsqueeze(0)
    mask = ar_r < torch.as_tensor(r_lens, dtype=torch.long).unsqueeze(1)  # [N, Rm]
    first = torch.as_tensor([len(t) - 1 for t in tails], dtype=torch.long).unsqueeze(1)  # column of response token 0
    tgt = torch.full((N, Rm), pad_id, dtype=torch.long)
    for n, i in enumerate(rows):
        tgt[n, : r_lens[n]] = torch.as_tensor(list(response_ids_list[i]), dtype=torch.long)
    ids, attn, pos, mask, tgt = (t.to(device) for t in (ids, attn, pos, mask, tgt))

    cache.batch_select_indices(g_t.to(device))
    cache.frozen = _FREEZABLE
    with head_inputs(model) as seen, _layer_attrs(layers, "_can_checkpoint_with_cache", True), adapter_autocast(model):
        model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=not checkpointed,
              **{cache_kwarg(model): cache})
    hidden = seen[-1]  # [N, Sm, H]; column first_n + t predicts response token t of row n
    at = mask.nonzero(as_tuple=True)
    cols = (first.to(device) + ar_r.to(device))[at]
    tok_logp, tok_ent = selective_logprobs(model, hidden[at[0], cols], tgt[at], suppressed_token_ids(model),
                                           return_entropy)
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

    Generalises the §15 proxies to the groups `layout` picks: a group sharing ``c`` tokens counts
    ``c + Σ_j (P_j - c + S_j)`` tokens and ``c² + Σ_j (P_j - c + S_j)(P_j + S_j)`` score entries (for
    identical prompts of length P: ``P + Σ_j S_j`` and ``P² + Σ_j S_j (P + S_j)``); rows in no group
    count ``P_j + S_j`` and ``(P_j + S_j)²`` in both layouts.
    """
    groups = layout(prompt_ids_list, response_ids_list, min_share)
    lens = [(len(p), len(r)) for p, r in zip(prompt_ids_list, response_ids_list)]
    plain_tok = sum(p + r for p, r in lens)
    plain_att = sum((p + r) ** 2 for p, r in lens)
    grouped = {i for rows, _ in groups for i in rows}
    sh_att = sum((p + r) ** 2 for i, (p, r) in enumerate(lens) if i not in grouped)
    for rows, c in groups:
        sh_att += c * c + sum((lens[i][0] - c + lens[i][1]) * sum(lens[i]) for i in rows)
    sh_tok = _tokens(prompt_ids_list, response_ids_list, groups)
    return {
        "rows": len(lens),
        "distinct_prompts": len(prompt_groups(prompt_ids_list)),
        "shared_groups": len(groups),
        "shared_rows": len(grouped),
        "shared_length": [c for _, c in groups],
        "plain_tokens": plain_tok,
        "shared_tokens": sh_tok,
        "token_ratio": sh_tok / plain_tok if plain_tok else 1.0,
        "plain_attn": plain_att,
        "shared_attn": sh_att,
        "attn_ratio": sh_att / plain_att if plain_att else 1.0,
    }
