"""Prefix-shared forward (algos/prefix_forward.py) against the plain `sequence_logprobs`."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch

from agents.forward import sequence_logprobs
from algos.prefix_forward import (
    cost_proxy,
    layout,
    prefix_share_stats,
    prompt_groups,
    shared_prefix_logprobs,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These forwards are tiny: one thread is as fast and far steadier on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()


def _small_model(attn: str, seed: int = 0):
    from transformers import Qwen2Config

    from agents.tiny import init_model

    cfg = Qwen2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      use_sliding_window=False, attn_implementation=attn)
    return init_model(cfg, seed)


def _batch(vocab: int, seed: int, sizes=(1, 2, 3, 4, 1, 4), p_range=(2, 40), r_range=(1, 12)):
    """Random prompts shared by groups of the given sizes, varied response lengths, shuffled."""
    rng = random.Random(seed)
    prompts, responses = [], []
    for g in sizes:
        p = [rng.randrange(vocab) for _ in range(rng.randint(*p_range))]
        for _ in range(g):
            prompts.append(list(p))
            responses.append([rng.randrange(vocab) for _ in range(rng.randint(*r_range))])
    order = list(range(len(prompts)))
    rng.shuffle(order)
    return [prompts[i] for i in order], [responses[i] for i in order]


def _vocab(model) -> int:
    return model.get_input_embeddings().weight.shape[0]


def _grads(model, fn, prompts, responses, weights):
    model.zero_grad(set_to_none=True)
    logp, mask, ent = fn(model, prompts, responses, 0, return_entropy=True)
    loss = (logp * weights[:, : logp.shape[1]]).sum() + 0.1 * (ent * mask).sum()
    loss.backward()
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def _assert_same_forward(model, prompts, responses, atol=1e-5, **kw):
    a = sequence_logprobs(model, prompts, responses, 0, return_entropy=True)
    b = shared_prefix_logprobs(model, prompts, responses, 0, return_entropy=True, **kw)
    assert b[0].shape == a[0].shape and b[1].shape == a[1].shape and b[2].shape == a[2].shape
    assert b[0].dtype == torch.float32
    assert torch.equal(a[1], b[1])
    torch.testing.assert_close(b[0], a[0], atol=atol, rtol=0)
    torch.testing.assert_close(b[2], a[2], atol=atol, rtol=0)
    assert not b[0][~b[1]].any() and not b[2][~b[1]].any()


def _assert_same_grads(model, prompts, responses, seed=0):
    T = max(len(r) for r in responses)
    weights = torch.randn(len(prompts), T, generator=torch.Generator().manual_seed(seed))
    ga = _grads(model, sequence_logprobs, prompts, responses, weights)
    gb = _grads(model, shared_prefix_logprobs, prompts, responses, weights)
    assert ga.keys() == gb.keys() and ga
    for n in ga:
        scale = ga[n].abs().max().clamp_min(1e-6)
        err = (ga[n] - gb[n]).abs().max() / scale
        assert err < 1e-4, f"{n}: relative grad error {float(err):.2e}"


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sequence_logprobs_tiny_model(tiny_model, seed):
    prompts, responses = _batch(_vocab(tiny_model), seed)
    with torch.no_grad():
        _assert_same_forward(tiny_model, prompts, responses)
    _assert_same_grads(tiny_model, prompts, responses, seed)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_matches_for_attention_implementations(attn):
    model = _small_model(attn)
    assert model.config._attn_implementation == attn
    prompts, responses = _batch(256, 3, sizes=(4, 1, 3, 2, 2))
    _assert_same_forward(model, prompts, responses)  # with grad enabled
    _assert_same_grads(model, prompts, responses)


def test_no_grad_and_inference_mode(tiny_model):
    prompts, responses = _batch(_vocab(tiny_model), 5)
    ref = sequence_logprobs(tiny_model, prompts, responses, 0)[0].detach()
    with torch.no_grad():
        logp, mask, ent = shared_prefix_logprobs(tiny_model, prompts, responses, 0)
    assert ent is None and not logp.requires_grad
    torch.testing.assert_close(logp, ref, atol=1e-5, rtol=0)
    with torch.inference_mode():
        logp2 = shared_prefix_logprobs(tiny_model, prompts, responses, 0)[0]
    torch.testing.assert_close(logp2, ref, atol=1e-5, rtol=0)


def test_edge_rows_and_min_share():
    model = _small_model("sdpa", seed=1)
    rng = random.Random(7)
    shared_p = [rng.randrange(256) for _ in range(9)]
    one_tok = [5]
    prompts = [shared_p, one_tok, shared_p, one_tok, shared_p, [1, 2, 3], shared_p]
    responses = [[3, 4, 5], [6, 7], [], [8], [9] * 15, [10, 11, 12, 13], [12]]
    with torch.no_grad():
        _assert_same_forward(model, prompts, responses)
        for ms in (1, 2, 4, 5):
            _assert_same_forward(model, prompts, responses, min_share=ms)
        # nothing shareable, all-empty responses, empty batch
        _assert_same_forward(model, [[1, 2], [3, 4]], [[5], [6, 7]])
        logp, mask, ent = shared_prefix_logprobs(model, [[1, 2], [1, 2]], [[], []], 0, return_entropy=True)
        assert logp.shape == (2, 0) and mask.shape == (2, 0)
        logp, mask, _ = shared_prefix_logprobs(model, [], [], 0)
        assert logp.shape == (0, 0)
    with pytest.raises(ValueError):
        shared_prefix_logprobs(model, [[1]], [[2], [3]], 0)


def test_all_rows_one_prompt_and_long_responses():
    model = _small_model("sdpa", seed=2)
    prompts, responses = _batch(256, 11, sizes=(6,), p_range=(30, 30), r_range=(1, 40))
    _assert_same_forward(model, prompts, responses)
    _assert_same_grads(model, prompts, responses)


def test_no_padding_anywhere():
    """Equal prompt and response lengths: no padding, so transformers may try its is_causal shortcut."""
    model = _small_model("sdpa", seed=4)
    prompts, responses = _batch(256, 12, sizes=(3, 3), p_range=(10, 10), r_range=(5, 5))
    _assert_same_forward(model, prompts, responses)
    _assert_same_grads(model, prompts, responses)


def _instruction_batch(vocab: int, seed: int, rows: int = 7, head: int = 24, tail=(1, 12), r_range=(1, 10)):
    """Distinct prompts that all start with one instruction (and vary after it), as SFT rows do."""
    rng = random.Random(seed)
    instruction = [rng.randrange(vocab) for _ in range(head)]
    prompts = [instruction + [rng.randrange(vocab) for _ in range(rng.randint(*tail))] for _ in range(rows)]
    responses = [[rng.randrange(vocab) for _ in range(rng.randint(*r_range))] for _ in range(rows)]
    return prompts, responses


class _TokensIn:
    """Counts the tokens a model's forwards embed (what the linear layers see, padding included)."""

    def __init__(self, model):
        self.n = 0
        self.handle = model.get_input_embeddings().register_forward_hook(self._count)

    def _count(self, _module, args, _out):
        self.n += args[0].numel()


def test_rows_with_a_common_instruction_share_it():
    prompts, responses = _instruction_batch(256, 1)
    groups = layout(prompts, responses)
    assert groups == [(list(range(7)), 24)]  # one group, the instruction's 24 tokens
    for attn in ("sdpa", "eager"):
        model = _small_model(attn, seed=6)
        _assert_same_forward(model, prompts, responses)
        _assert_same_grads(model, prompts, responses)
    counter = _TokensIn(model)
    with torch.no_grad():
        shared_prefix_logprobs(model, prompts, responses, 0)
    shared_tokens, counter.n = counter.n, 0
    with torch.no_grad():
        sequence_logprobs(model, prompts, responses, 0)
    assert shared_tokens < 0.7 * counter.n


def test_common_prefix_edge_cases():
    model = _small_model("sdpa", seed=7)
    base = [9, 8, 7, 6, 5]
    # a prompt that is the whole common prefix; an empty response; a prompt inside another
    prompts = [base, base + [1, 2], base + [3], base[:4], base + [1]]
    responses = [[4, 4], [5], [], [6, 6, 6], [7]]
    with torch.no_grad():
        _assert_same_forward(model, prompts, responses)
    _assert_same_grads(model, prompts, responses)
    assert layout(prompts, responses) == [([0, 1, 3, 4], 4)]
    # identical prompt groups beat one short common prefix
    prompts, responses = _batch(256, 8, sizes=(4, 4), p_range=(20, 20))
    prompts = [[1, 2] + p for p in prompts]
    groups = layout(prompts, responses)
    assert len(groups) == 2 and all(c == 22 for _, c in groups)
    _assert_same_forward(model, prompts, responses)


def test_sharing_under_gradient_checkpointing():
    """Checkpointed layers keep the read-only prefix cache: same numbers and gradients, fewer tokens."""
    model = _small_model("sdpa", seed=5)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    for prompts, responses in (_batch(256, 13, sizes=(3, 2)), _instruction_batch(256, 2)):
        _assert_same_forward(model, prompts, responses)
        _assert_same_grads(model, prompts, responses)
        counter = _TokensIn(model)
        shared_prefix_logprobs(model, prompts, responses, 0)[0].sum().backward()
        shared_tokens, counter.n = counter.n, 0
        sequence_logprobs(model, prompts, responses, 0)[0].sum().backward()
        assert shared_tokens < counter.n  # embedding counts its recompute too: both paths checkpoint
        counter.handle.remove()
    layers = model.model.layers
    assert all(m.gradient_checkpointing and "_can_checkpoint_with_cache" not in vars(m) for m in layers)
    with torch.no_grad():  # no checkpointing without grad: the shared path runs
        _assert_same_forward(model, prompts, responses)


def test_reentrant_checkpointing_takes_the_plain_path():
    model = _small_model("sdpa", seed=5)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    prompts, responses = _instruction_batch(256, 3)
    counter = _TokensIn(model)
    shared_prefix_logprobs(model, prompts, responses, 0)
    shared_tokens, counter.n = counter.n, 0
    sequence_logprobs(model, prompts, responses, 0)
    assert shared_tokens == counter.n


def test_lora_model():
    peft = pytest.importorskip("peft")
    model = _small_model("sdpa", seed=3)
    lora = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = peft.get_peft_model(model, lora)
    with torch.no_grad():  # make the adapters non-trivial
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(n)))
    for prompts, responses in (_batch(256, 4, sizes=(3, 1, 4)), _instruction_batch(256, 4)):
        _assert_same_forward(model, prompts, responses)
        _assert_same_grads(model, prompts, responses)
    model.base_model.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    _assert_same_grads(model, prompts, responses)
    assert all("lora" in n for n, p in model.named_parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# cost accounting and batching helpers


def test_cost_proxy_matches_algorithms_md():
    for (P, S, G), (lin, att) in {(4096, 512, 8): (0.222, 0.210), (16384, 1024, 16): (0.118, 0.114),
                                  (1000, 1000, 8): (0.5625, 0.531)}.items():
        assert cost_proxy(P, S, G) == pytest.approx((lin, att), abs=6e-4)
        st = prefix_share_stats([list(range(P))] * G, [[0] * S] * G)
        assert st["token_ratio"] == pytest.approx(cost_proxy(P, S, G)[0])
        assert st["attn_ratio"] == pytest.approx(cost_proxy(P, S, G)[1])
        assert st["plain_tokens"] == G * (P + S) and st["shared_tokens"] == P + G * S
        assert st["shared_groups"] == 1 and st["shared_rows"] == G


def test_prefix_share_stats_mixed_batch():
    prompts = [[1, 2, 3], [1, 2, 3], [4, 5], [1, 2, 3], [6]]
    responses = [[1], [1, 2], [3], [], [4, 4]]
    st = prefix_share_stats(prompts, responses)
    # group [1,2,3]: rows 0,1 shared (P=3, S=1,2), row 3 (empty response) and the unique prompts stay plain
    assert st["rows"] == 5 and st["distinct_prompts"] == 3
    assert st["shared_groups"] == 1 and st["shared_rows"] == 2
    assert st["plain_tokens"] == 4 + 5 + 3 + 3 + 3
    assert st["shared_tokens"] == (3 + 1 + 2) + 3 + 3 + 3
    assert prefix_share_stats(prompts, responses, min_share=3)["token_ratio"] == 1.0
    assert prompt_groups(prompts) == [[0, 1, 3], [2], [4]]


@dataclass
class _Row:
    prompt_ids: list
    response_ids: list


def test_trainer_batches_keep_prompt_blocks_together():
    from algos.batching import micro_batches, minibatches

    prompts, responses = _batch(50, 9, sizes=(1, 2, 3, 4, 8, 2, 5, 3, 3))
    rows = [_Row(p, r) for p, r in zip(prompts, responses)]
    for size in (4, 6, 10):
        mine = [list(micro_batches(rows, size)), list(minibatches(rows, size, random.Random(size), by_prompt=True))]
        theirs = [list(micro_batches(rows, size)), list(minibatches(rows, size, random.Random(0)))]
        for a, b in zip(mine, theirs):
            assert [len(x) for x in a] == [len(x) for x in b]  # same number and sizes of batches
            assert sorted(id(r) for x in a for r in x) == sorted(id(r) for r in rows)
        # each prompt block is cut at most where it straddles a boundary: pieces <= 1 + len // size + 1
        for batches in mine:
            for g in prompt_groups(prompts):
                ids = {id(rows[i]) for i in g}
                pieces = sum(bool(ids & {id(r) for r in x}) for x in batches)
                assert pieces <= len(g) // size + 2
    # micro-batches: whole-batch sharing is kept almost entirely
    micro = list(micro_batches(rows, 8))
    shared = sum(prefix_share_stats([r.prompt_ids for r in m], [r.response_ids for r in m])["shared_tokens"]
                 for m in micro)
    best = prefix_share_stats(prompts, responses)["shared_tokens"]
    assert shared <= best + 3 * max(len(p) for p in prompts)


def test_sft_step_is_the_same_with_the_shared_instruction():
    """train_sft's shared path fits the same loss: one step from the same start lands on the same weights."""
    from types import SimpleNamespace

    from algos.batching import Row
    from algos.sft import train_sft

    prompts, responses = _instruction_batch(256, 5, rows=8)
    rows = [Row(p, r) for p, r in zip(prompts, responses)]
    weights, losses = [], []
    for shared in (False, True):
        model = _small_model("sdpa", seed=8)
        stats = train_sft(model, SimpleNamespace(pad_token_id=0), rows, epochs=1, lr=1e-2, batch_size=8,
                          progress=False, shared_prefix=shared)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
        losses.append(stats["sft_loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    moved = max(float((weights[0][n] - _small_model("sdpa", seed=8).state_dict()[n]).abs().max()) for n in weights[0])
    assert moved > 1e-3  # the step did something
    # AdamW's first step is about lr * sign(grad): where a gradient is near 0, float rounding of the
    # two forwards can move it by a little of lr (1e-2)
    for n in weights[0]:
        torch.testing.assert_close(weights[1][n], weights[0][n], atol=1e-4, rtol=1e-4)
