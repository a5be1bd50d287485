"""The critic of PPO-with-GAE: a copy of the policy network with a scalar value head.

V(s_t) is read at the last token of the turn's prompt, i.e. the state the action is chosen from
(the step-independent layout, algorithms.md §0.2). The critic starts as a copy of the policy
(as verl initialises its critic from the actor checkpoint) with a zero-initialised head, so its
first values are 0 and the first advantages are plain returns.

With a VLM policy the critic is a VLM too: prompts of image steps hold expanded image pad tokens,
and the critic's forward takes the same pixel inputs as the policy's (``pixel_values`` /
``image_grid_thw`` of the batch's rows in row order, `algos.batching.pixel_kwargs`), so it values
the state it is shown, not placeholders without images.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn


class Critic(nn.Module):
    def __init__(self, policy_model: nn.Module, pad_id: int):
        super().__init__()
        self.backbone = copy.deepcopy(policy_model)
        hidden = self.backbone.config.get_text_config().hidden_size  # a VLM's config nests it
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.pad_id = pad_id

    def forward(self, prompts: Sequence[Sequence[int]], pixel_values: torch.Tensor | None = None,
                image_grid_thw: torch.Tensor | None = None) -> torch.Tensor:
        """Values [B] of the given prompt token lists (left-padded into one batch).

        `pixel_values` / `image_grid_thw`: a VLM backbone's pixel inputs for the prompts' images, in
        row order (as `sequence_logprobs` takes them); positions are then M-RoPE positions.
        """
        device = self.head.weight.device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            attn[i, width - len(p):] = 1
        ids, attn = ids.to(device), attn.to(device)
        extra: dict[str, Any] = {}
        if pixel_values is None:
            # left padding: position ids count real tokens only, so a prompt's value does not depend
            # on how long its batch neighbours are
            pos = (attn.cumsum(-1) - 1).clamp_min(0)
        else:
            from agents.vlm import mrope_position_ids

            pos, _ = mrope_position_ids(self.backbone, ids, attn, image_grid_thw)  # counts real tokens too
            extra = {"pixel_values": pixel_values.to(device), "image_grid_thw": image_grid_thw.to(device)}
        out = self.backbone(input_ids=ids, attention_mask=attn, position_ids=pos, output_hidden_states=True,
                            use_cache=False, logits_to_keep=1, **extra)
        last = out.hidden_states[-1][:, -1].float()  # the last prompt token of every row
        return self.head(last).squeeze(-1)

    @torch.no_grad()
    def values(self, prompts: Sequence[Sequence[int]], batch_size: int = 64,
               pixel_inputs: Sequence[dict[str, torch.Tensor]] | None = None) -> list[float]:
        """Values of `prompts` in batches of `batch_size`, in eval mode without gradients.

        `pixel_inputs`: per prompt, its images' pixel inputs ({} for none), as `HFPolicy.pixel_inputs`
        returns them; None for text prompts.
        """
        was_training = self.training
        self.eval()
        out: list[float] = []
        for s in range(0, len(prompts), batch_size):
            extra: dict[str, torch.Tensor] = {}
            if pixel_inputs is not None:
                from agents.vlm import concat_pixel_inputs

                extra = concat_pixel_inputs(pixel_inputs[s:s + batch_size])
            out += self(prompts[s:s + batch_size], **extra).tolist()
        self.train(was_training)
        return out
