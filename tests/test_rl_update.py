"""One PPO update moves probability toward positive-advantage responses and away from negative ones."""

import torch

from agents.hf import HFPolicy, sequence_logprobs
from algos.batching import Row, chat_prompt_ids, response_ids_for
from algos.rl import RLTrainer
from algos.train_config import TrainConfig


def test_update_direction_follows_the_advantage_sign(tiny_model_dir):
    policy = HFPolicy(tiny_model_dir)
    tok = policy.tokenizer
    cfg = TrainConfig()
    cfg.rl.lr, cfg.rl.minibatch_size = 1e-3, 8
    trainer = RLTrainer(cfg, policy, pool=None, prompt=None)
    prompt = chat_prompt_ids(tok, [{"role": "user", "content": "Player at (4, 2). Boxes at (2, 2)."}])
    good, bad = response_ids_for(tok, "<action>up</action>"), response_ids_for(tok, "<action>left</action>")

    def logps():
        with torch.no_grad():
            lp, mask, _ = sequence_logprobs(policy.model, [prompt, prompt], [good, bad], pad_id=tok.pad_token_id)
        return (lp * mask).sum(1)

    before = logps()
    rows = [Row(prompt, good, advantage=1.0), Row(prompt, bad, advantage=-1.0)]
    for r, lp in zip(rows, sequence_logprobs(policy.model, [prompt] * 2, [good, bad], pad_id=tok.pad_token_id)[0]):
        r.old_logprobs = lp[: len(r.response_ids)].detach()
    stats = trainer.update(rows, iteration=0)
    after = logps()
    assert after[0] > before[0] and after[1] < before[1]
    assert stats["grad_norm"] > 0 and 0.0 <= stats["clip_frac"] <= 1.0
