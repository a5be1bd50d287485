"""The training forward: per-token log-probs of given responses, shared by the sampler and the trainer.

`sequence_logprobs` recomputes, for prompt/response ids, the log-probs `HFPolicy.generate`
recorded while sampling (the trainer's old log-probs and its loss); the LM head runs only at
response positions (agents/lm_head.py). The helpers here call a model the same way whatever its
transformers version (the `past_key_values` -> `cache` rename) or wrapper (peft): the sampler
(agents/hf.py) and the shared-prefix forward (algos/prefix_forward.py) use them too.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, ContextManager, Sequence

import torch

from .lm_head import head_inputs, selective_logprobs

# --------------------------------------------------------------------------------------------
# model-call helpers (robust to the transformers 4 -> 5 `past_key_values` -> `cache` rename)


def base_model(model):
    get = getattr(model, "get_base_model", None)  # peft wrappers
    return get() if callable(get) else model


def cache_kwarg(model) -> str:
    try:
        params = inspect.signature(base_model(model).forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def new_cache(model, cls: type | None = None):
    """An empty `cls` (a DynamicCache or a subclass of it) for `model`."""
    if cls is None:
        from transformers import DynamicCache as cls

    try:
        return cls(config=base_model(model).config)
    except TypeError:  # transformers < 4.56
        return cls()


#: Config fields naming a VLM's vision placeholder tokens (see `suppressed_token_ids`).
_VISION_TOKEN_FIELDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def adapter_autocast(model) -> ContextManager:
    """Mixed precision for a half-precision model that trains float32 adapters (model.dtype=bfloat16
    with LoRA): the adapters' matmuls run in the base's dtype under autocast, where peft would
    otherwise copy every layer's input to float32 and the result back. The adapters' weights, their
    gradients and AdamW's steps stay float32; autocast casts the small weights per call. Any other
    model gets a no-op context."""
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad and p.is_floating_point()}
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    low = frozen & {torch.bfloat16, torch.float16}
    if len(low) != 1 or trained != {torch.float32}:
        return contextlib.nullcontext()
    from peft.helpers import disable_input_dtype_casting

    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(next(model.parameters()).device.type, dtype=low.pop()))
    stack.enter_context(disable_input_dtype_casting(model))
    return stack


def suppressed_token_ids(model) -> list[int]:
    """Token ids a policy never emits: a VLM's vision placeholders (empty for text models).

    A sampled ``<|image_pad|>`` in a response would be read as an image slot by the training
    forward, with no pixels for it. Generation and `sequence_logprobs` both give these tokens
    probability 0, so rollout log-probs and their recomputation stay one distribution.
    """
    cfg = getattr(base_model(model), "config", None)
    ids = [getattr(cfg, f, None) for f in _VISION_TOKEN_FIELDS] if cfg is not None else []
    return sorted({int(i) for i in ids if i is not None})


def suppress_tokens(logits: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """`logits` with the last dimension's `ids` set to a huge negative value (out of place)."""
    if not ids:
        return logits
    return logits.index_fill(-1, torch.as_tensor(list(ids), device=logits.device), -1e30)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, L - len(s) :] = torch.as_tensor(s, dtype=torch.long)
            mask[i, L - len(s) :] = 1
    return ids.to(device), mask.to(device)


# --------------------------------------------------------------------------------------------
# log-probs of given responses


def sequence_logprobs(
    model,
    prompt_ids_list: Sequence[Sequence[int]],
    response_ids_list: Sequence[Sequence[int]],
    pad_id: int,
    return_entropy: bool = False,
    pixel_values: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
):
    """Per-token log-probs of each response given its prompt, under `model`'s current weights.

    Rows are ``prompt + response``, right-padded, with position ids ``0..n-1`` and an attention
    mask over real tokens. Runs with gradients when torch grad is enabled (call it under
    `torch.no_grad()` / `inference_mode()` for old log-probs).

    VLMs: `pixel_values` / `image_grid_thw` are the pixel inputs of the rows' images in row order
    (`agents.vlm.concat_pixel_inputs`); positions are then M-RoPE positions of the padded rows.

    Returns ``(logp, mask, entropy)``: ``logp`` float32 (float64 for a float64 model) ``[B, Tresp]`` (0 where masked), ``mask`` bool
    ``[B, Tresp]`` (True on real response tokens), ``entropy`` ``[B, Tresp]`` of the temperature-1
    next-token distribution at each response position (0 where masked) when `return_entropy`,
    else None. ``Tresp`` is the longest response.
    """
    B = len(prompt_ids_list)
    if B != len(response_ids_list):
        raise ValueError("prompt_ids_list and response_ids_list differ in length")
    device = next(model.parameters()).device
    if B == 0:
        z = torch.zeros((0, 0), device=device)
        return z, z.bool(), (z if return_entropy else None)
    p_lens = [len(p) for p in prompt_ids_list]
    r_lens = [len(r) for r in response_ids_list]
    if min(p_lens) < 1:
        raise ValueError("every prompt needs at least one token (the first response token is predicted from it)")
    T = max(r_lens)
    if T == 0:
        z = torch.zeros((B, 0), device=device)
        return z, z.bool(), (z if return_entropy else None)
    L = max(p + r for p, r in zip(p_lens, r_lens))
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids_list, response_ids_list)):
        n = len(p) + len(r)
        ids[i, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
        if len(r):
            ids[i, len(p) : n] = torch.as_tensor(list(r), dtype=torch.long)
        attn[i, :n] = 1
    position_ids = torch.arange(L, dtype=torch.long).unsqueeze(0).expand(B, L)

    # Only the window of positions that predict some response token goes through the LM head.
    lo = min(p_lens) - 1
    keep = L - lo
    ids, attn, position_ids = ids.to(device), attn.to(device), position_ids.to(device)
    extra: dict[str, Any] = {}
    if pixel_values is not None:
        from .vlm import mrope_position_ids

        position_ids, _ = mrope_position_ids(model, ids, attn, image_grid_thw)
        extra = {"pixel_values": pixel_values.to(device), "image_grid_thw": image_grid_thw.to(device)}
    with head_inputs(model) as seen, adapter_autocast(model):  # the LM head is applied below, to responses only
        model(input_ids=ids, attention_mask=attn, position_ids=position_ids, use_cache=False, logits_to_keep=keep,
              **extra)
    hidden = seen[-1][:, -keep:]  # [B, keep, H]; column j predicts token lo + j + 1

    p_t = torch.as_tensor(p_lens, device=device).unsqueeze(1)
    r_t = torch.as_tensor(r_lens, device=device).unsqueeze(1)
    ar = torch.arange(T, device=device).unsqueeze(0)
    mask = ar < r_t  # [B, T]
    cols = (p_t - 1 - lo + ar).clamp(max=keep - 1)  # the column predicting response token t
    rows, where = mask.nonzero(as_tuple=True)
    at = cols[rows, where]  # the column of each response token
    targets = ids[rows, at + lo + 1]
    tok_logp, tok_ent = selective_logprobs(model, hidden[rows, at], targets,
                                           suppressed_token_ids(model), return_entropy)
    logp = tok_logp.new_zeros((B, T)).index_put((rows, where), tok_logp)
    entropy = None
    if return_entropy:
        entropy = tok_ent.new_zeros((B, T)).index_put((rows, where), tok_ent)
    return logp, mask, entropy
