"""The critic of PPO-with-GAE: a copy of the policy network with a scalar value head.

V(s_t) is read at the last token of the turn's prompt, i.e. the state the action is chosen from
(the step-independent layout, algorithms.md §0.2). The critic starts as a copy of the policy
(as verl initialises its critic from the actor checkpoint) with a zero-initialised head, so its
first values are 0 and the first advantages are plain returns.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn


class Critic(nn.Module):
    def __init__(self, policy_model: nn.Module, pad_id: int):
        super().__init__()
        self.backbone = copy.deepcopy(policy_model)
        hidden = self.backbone.config.hidden_size
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.pad_id = pad_id

    def forward(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Values [B] of the given prompt token lists (left-padded into one batch)."""
        device = self.head.weight.device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            attn[i, width - len(p):] = 1
        # left padding: position ids count real tokens only, so a prompt's value does not depend
        # on how long its batch neighbours are
        pos = (attn.cumsum(-1) - 1).clamp_min(0)
        out = self.backbone(input_ids=ids.to(device), attention_mask=attn.to(device), position_ids=pos.to(device),
                            output_hidden_states=True, use_cache=False, logits_to_keep=1)
        last = out.hidden_states[-1][:, -1].float()  # the last prompt token of every row
        return self.head(last).squeeze(-1)

    @torch.no_grad()
    def values(self, prompts: Sequence[Sequence[int]], batch_size: int = 64) -> list[float]:
        was_training = self.training
        self.eval()
        out: list[float] = []
        for s in range(0, len(prompts), batch_size):
            out += self(prompts[s:s + batch_size]).tolist()
        self.train(was_training)
        return out
