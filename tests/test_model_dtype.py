"""model.dtype=bfloat16: a loaded model's frozen weights in bfloat16, LoRA adapters and log-probs in
float32; refused where AdamW would step bfloat16 weights."""

from __future__ import annotations

import contextlib

import pytest
import torch

from agents.forward import sequence_logprobs
from algos.config import ConfigError, apply_overrides
from algos.policy_setup import load_policy
from algos.train_checks import check_model
from algos.train_config import TrainConfig


def _cfg(*overrides: str) -> TrainConfig:
    return apply_overrides(TrainConfig(), list(overrides))


@pytest.mark.parametrize("overrides, says", [
    ((), "the tiny model built here trains all its weights"),
    (("model.lora=off",), "model.lora=on"),
])
def test_bfloat16_without_lora_on_a_loaded_model_is_refused(overrides, says, tiny_model_dir):
    path = () if not overrides else (f"model.path={tiny_model_dir}",)
    with pytest.raises(ConfigError, match="model.dtype=bfloat16") as e:
        check_model(_cfg("model.dtype=bfloat16", *path, *overrides))
    assert says in str(e.value) and "model.dtype=float32" in str(e.value)


def test_bfloat16_base_with_float32_adapters_gives_close_float32_logprobs(tiny_model_dir, tmp_path):
    pols = {d: load_policy(_cfg(f"model.path={tiny_model_dir}", f"model.dtype={d}"), tmp_path)
            for d in ("float32", "bfloat16")}
    bf16 = pols["bfloat16"].model
    frozen = {p.dtype for p in bf16.parameters() if not p.requires_grad}
    trained = {p.dtype for p in bf16.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    tok = pols["float32"].tokenizer
    prompt, response = tok.encode("Current observation (step 0):"), tok.encode("<action>up</action>")
    lp = {d: sequence_logprobs(p.model, [prompt], [response], p.pad_token_id)[0][0] for d, p in pols.items()}
    assert lp["bfloat16"].dtype == torch.float32
    assert torch.allclose(lp["bfloat16"], lp["float32"], atol=0.1), (lp["bfloat16"], lp["float32"])
    assert not torch.equal(lp["bfloat16"], lp["float32"])  # the base really ran in bfloat16
    loss = -lp["bfloat16"].sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bf16.parameters() if p.requires_grad)


def test_bfloat16_adapters_compute_in_bfloat16_without_casting_inputs(tiny_model_dir, tmp_path, monkeypatch):
    import agents.forward
    from agents.policy import Request, SamplingParams

    policy = load_policy(_cfg(f"model.path={tiny_model_dir}", "model.dtype=bfloat16"), tmp_path)
    model = policy.model
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at 0, where the adapters' precision would not show
            p.data.normal_(0, 0.05)
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.add(args[0].dtype))
             for n, m in model.named_modules() if n.endswith("lora_A.default")]
    tok = policy.tokenizer
    prompt, response = tok.encode("Current observation (step 0):"), tok.encode("<action>up</action>")
    lp = sequence_logprobs(model, [prompt], [response], policy.pad_token_id)[0][0]
    assert seen == {torch.bfloat16}  # no float32 copy of each layer's input
    seen.clear()
    policy.generate([Request(messages=[{"role": "user", "content": "Current observation (step 0):"}])],
                    SamplingParams(max_new_tokens=3, seed=0))
    assert seen == {torch.bfloat16}  # the sampler runs the same mixed precision as the trainer
    for h in hooks:
        h.remove()
    (-lp.sum()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    # peft's own path (adapters in float32 on float32 copies of the inputs) gives the same log-probs
    # to bfloat16's precision
    monkeypatch.setattr(agents.forward, "adapter_autocast", lambda m: contextlib.nullcontext())
    with torch.no_grad():
        ref = sequence_logprobs(model, [prompt], [response], policy.pad_token_id)[0][0]
    assert torch.allclose(lp.detach(), ref, atol=0.1), (lp, ref)


def test_float32_models_run_without_autocast(tiny_model_dir, tmp_path):
    from agents.forward import adapter_autocast

    policy = load_policy(_cfg(f"model.path={tiny_model_dir}"), tmp_path)  # float32 with float32 LoRA
    assert isinstance(adapter_autocast(policy.model), contextlib.nullcontext)
