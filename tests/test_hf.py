"""Tests for the tiny-model builder (agents.tiny) and the transformers policy backend (agents.hf)."""

from __future__ import annotations

import json
import random
import time
import unicodedata

import pytest
import torch

from agents.hf import HFPolicy
from agents.forward import sequence_logprobs
from agents.policy import Generation, Policy, Request, SamplingParams
from agents.tiny import MARKER_FILE, ensure_tiny_model, init_model, train_tokenizer


def _sokoban_corpus(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    moves = ["up", "down", "left", "right"]
    out = []
    for _ in range(n):
        rows = ["#" * 7]
        for _ in range(4):
            rows.append("#" + "".join(rng.choice("  __.$@") for _ in range(5)) + "#")
        rows.append("#" * 7)
        board = "\n".join(rows)
        move = rng.choice(moves)
        out.append(
            f"Current board:\n{board}\nThe player @ should push the box $ onto the target . "
            f"<think>The box is {rng.choice(moves)} of me, so I move {move}.</think><action>{move}</action>"
        )
    return out


CORPUS = _sokoban_corpus()

STRINGS = [
    "hello world",
    "<think>push the box left</think><action>left</action>",
    "#######\n#  @$.#\n#######\n",
    "  leading spaces\n\n\ttabs\r\nand CRLF\r\n",
    "Ünïcödé — 日本語テキスト 🤖🎉 ñ",
    "it's I'LL we'd they've 12345 3.14159",
    "<|im_start|>user\nmove?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|im_end|>x<|im_start",
    "",
    " ",
    "\x00\x01\x7f end",
]


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return ensure_tiny_model(tmp_path_factory.mktemp("tiny") / "model", CORPUS)


@pytest.fixture(scope="session")
def policy(tiny_path):
    return HFPolicy(tiny_path)


def _req(content: str, system: str | None = None) -> Request:
    msgs = [{"role": "system", "content": system}] if system else []
    return Request(messages=msgs + [{"role": "user", "content": content}])


REQS = [_req("board:\n#####\n#@$.#\n#####" * (1 + i % 3), system="You play sokoban." if i % 2 else None) for i in range(6)]


# ----------------------------------------------------------------------------------------------
# tiny model builder


def test_tokenizer_matches_autotokenizer(tiny_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    built = train_tokenizer(CORPUS, 1024)  # what the build trained (training is deterministic)
    saved = Tokenizer.from_file(str(tiny_path / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(tiny_path)
    assert built.to_str() == saved.to_str()
    assert built.get_vocab_size() <= 1024 and len(auto) == built.get_vocab_size()
    for s in STRINGS:
        ids = built.encode(s).ids
        assert auto(s, add_special_tokens=False)["input_ids"] == ids, s
        assert auto.encode(s) == ids, s  # no BOS / extra special tokens added
        # byte-level alphabet is complete: every (NFC) text round-trips
        assert auto.decode(ids) == unicodedata.normalize("NFC", s)
    for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert len(auto.encode(t)) == 1
    assert auto.eos_token == "<|im_end|>" and auto.pad_token == "<|endoftext|>"


def test_chat_template(tiny_path):
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(tiny_path)
    built = train_tokenizer(CORPUS, 1024)
    msgs = [
        {"role": "system", "content": "You play sokoban."},
        {"role": "user", "content": "#####\n#@$.#\n#####"},
        {"role": "assistant", "content": "<action>left</action>"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    text = auto.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou play sokoban.<|im_end|>\n"
        "<|im_start|>user\n#####\n#@$.#\n#####<|im_end|>\n"
        "<|im_start|>assistant\n<action>left</action><|im_end|>\n"
        "<|im_start|>user\nagain<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_gen = auto.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    assert not no_gen.endswith("<|im_start|>assistant\n")
    ids = auto(text, add_special_tokens=False)["input_ids"]
    assert ids == built.encode(text).ids
    assert auto.decode(ids) == text
    assert auto.convert_ids_to_tokens(ids[:2]) == ["<|im_start|>", "system"]


def test_model_reloads_with_identical_logits(tiny_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(tiny_path)
    assert cfg.model_type == "qwen2" and cfg.tie_word_embeddings
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (128, 4, 4, 2)
    loaded = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    assert type(loaded).__name__ == "Qwen2ForCausalLM"
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    fresh = init_model(cfg, seed=0)
    x = torch.randint(0, cfg.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = fresh(x).logits, loaded(x).logits
    assert torch.equal(a, b)
    gen = json.loads((tiny_path / "generation_config.json").read_text())
    assert cfg.eos_token_id in (gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]])


def test_ensure_reuses_build(tiny_path):
    before = (tiny_path / "model.safetensors").stat().st_mtime_ns
    t = time.perf_counter()
    assert ensure_tiny_model(tiny_path, CORPUS) == tiny_path
    assert time.perf_counter() - t < 1.0
    assert (tiny_path / "model.safetensors").stat().st_mtime_ns == before
    assert json.loads((tiny_path / MARKER_FILE).read_text())["hash"]


def test_ensure_rebuilds_on_change_and_refuses_foreign_dirs(tmp_path):
    out = tmp_path / "m"
    ensure_tiny_model(out, CORPUS[:50], hidden_size=32, num_layers=1, intermediate_size=64)
    h1 = json.loads((out / MARKER_FILE).read_text())["hash"]
    ensure_tiny_model(out, CORPUS[:50], hidden_size=32, num_layers=1, intermediate_size=64, seed=1)
    assert json.loads((out / MARKER_FILE).read_text())["hash"] != h1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        ensure_tiny_model(foreign, CORPUS[:50])
    assert (foreign / "notes.txt").exists()


# ----------------------------------------------------------------------------------------------
# HFPolicy


def test_policy_protocol(policy):
    assert isinstance(policy, Policy)
    assert policy.needs_expert_action is False
    assert policy.batch_size == 64
    assert policy.tokenizer.convert_ids_to_tokens(policy.eos_token_ids[0]) == "<|im_end|>"


def test_generation_is_seeded(policy):
    sp = SamplingParams(max_new_tokens=24, seed=7)
    a = policy.generate(REQS, sp)
    b = policy.generate(REQS, sp)
    c = policy.generate(REQS, SamplingParams(max_new_tokens=24, seed=8))
    assert all(isinstance(g, Generation) for g in a)
    assert [g.response_ids for g in a] == [g.response_ids for g in b]
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.response_ids for g in a] != [g.response_ids for g in c]
    for g, r in zip(a, REQS):
        assert g.prompt_ids == policy.encode_prompt(r)
        assert len(g.logprobs) == len(g.response_ids) > 0
        assert all(lp <= 0.0 for lp in g.logprobs)
        assert g.truncated == (len(g.response_ids) == 24 and g.response_ids[-1] not in policy.eos_token_ids)
        assert g.text == policy.tokenizer.decode(g.response_ids, skip_special_tokens=True)


def test_greedy(policy):
    sp = SamplingParams(max_new_tokens=8, greedy=True, seed=1)
    a = policy.generate(REQS[:2], sp)
    b = policy.generate(REQS[:2], SamplingParams(max_new_tokens=8, greedy=True, seed=2))
    assert [g.response_ids for g in a] == [g.response_ids for g in b]
    # the first greedy token is the argmax of the model's next-token logits
    ids = torch.tensor([a[0].prompt_ids])
    with torch.no_grad():
        logits = policy.model(ids).logits[0, -1]
    assert a[0].response_ids[0] == int(logits.argmax())
    assert a[0].logprobs[0] == pytest.approx(float(torch.log_softmax(logits, -1).max()), abs=1e-5)
    for g in a:
        assert g.truncated == (len(g.response_ids) == 8 and g.response_ids[-1] not in policy.eos_token_ids)


def test_eos_stops_and_is_kept(policy):
    ref = policy.generate(REQS[:1], SamplingParams(max_new_tokens=10, greedy=True))[0]
    target = ref.response_ids[3]
    first = ref.response_ids.index(target)
    saved = policy.eos_token_ids
    try:
        policy.eos_token_ids = saved + [target]
        g = policy.generate(REQS[:1], SamplingParams(max_new_tokens=10, greedy=True))[0]
    finally:
        policy.eos_token_ids = saved
    assert g.response_ids == ref.response_ids[: first + 1]
    assert g.logprobs == pytest.approx(ref.logprobs[: first + 1], abs=1e-5)
    assert not g.truncated


def test_stop_strings(policy):
    sp = SamplingParams(max_new_tokens=32, seed=3, temperature=1.0)
    ref = policy.generate(REQS[:1], sp)[0]
    tok = policy.tokenizer
    # a stop string taken from the middle of the reference text (ASCII, not in the first char)
    cands = [ref.text[i : i + 2] for i in range(3, len(ref.text) - 2) if ref.text[i : i + 2].isascii()]
    assert cands, ref.text
    stop = cands[len(cands) // 2]
    g = policy.generate(REQS[:1], SamplingParams(max_new_tokens=32, seed=3, stop=(stop, "never-seen-stop")))[0]
    cut = ref.text.index(stop) + len(stop)
    assert g.text == ref.text[:cut] and g.text.endswith(stop)
    assert not g.truncated
    n = len(g.response_ids)
    assert g.response_ids == ref.response_ids[:n]  # same RNG stream up to the stop
    assert g.logprobs == pytest.approx(ref.logprobs[:n], abs=1e-5)
    full = tok.decode(g.response_ids, skip_special_tokens=True)
    assert full.startswith(g.text)  # the last token may extend past the stop string
    assert stop not in tok.decode(g.response_ids[:-1], skip_special_tokens=True)


def test_stop_strings_batched(policy):
    sp = SamplingParams(max_new_tokens=16, greedy=True)
    ref = policy.generate(REQS, sp)
    stop = ref[0].text[4:6]
    got = policy.generate(REQS, SamplingParams(max_new_tokens=16, greedy=True, stop=(stop,)))
    for r, g in zip(ref, got):
        if stop in r.text:
            assert g.text == r.text[: r.text.index(stop) + len(stop)]
            assert not g.truncated
        else:
            assert g.text == r.text
        assert g.response_ids == r.response_ids[: len(g.response_ids)]


def test_logprobs_match_sequence_logprobs(policy):
    sp = SamplingParams(max_new_tokens=20, seed=11, temperature=0.7, top_p=0.9, stop=("</action>",))
    gens = policy.generate(REQS, sp)
    prompts = [g.prompt_ids for g in gens]
    resps = [g.response_ids for g in gens]
    with torch.no_grad():
        logp, mask, ent = sequence_logprobs(policy.model, prompts, resps, policy.pad_token_id, return_entropy=True)
    assert logp.shape == mask.shape == ent.shape == (len(gens), max(len(r) for r in resps))
    for i, g in enumerate(gens):
        n = len(g.response_ids)
        assert int(mask[i].sum()) == n
        assert torch.allclose(logp[i, :n], torch.tensor(g.logprobs), atol=1e-4), (logp[i, :n], g.logprobs)
        assert torch.all(ent[i, :n] > 0) and torch.all(ent[i, n:] == 0)
    per = policy.logprobs(prompts, resps, batch_size=4)
    for g, lp in zip(gens, per):
        assert torch.allclose(lp, torch.tensor(g.logprobs), atol=1e-4)
    # with grad enabled the log-probs are differentiable w.r.t. the weights
    policy.model.zero_grad()
    lp, m, _ = sequence_logprobs(policy.model, prompts[:2], resps[:2], policy.pad_token_id)
    lp[m].sum().backward()
    g = policy.model.model.embed_tokens.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    policy.model.zero_grad(set_to_none=True)


def test_left_padding_does_not_change_results(policy):
    short = _req("go")
    long = _req("board:\n" + "#####\n#@$.#\n#####\n" * 6, system="You play sokoban.")
    sp = SamplingParams(max_new_tokens=12, greedy=True)
    alone = policy.generate([short], sp)[0]
    batched = policy.generate([long, short], sp)[1]
    assert len(policy.encode_prompt(long)) > len(alone.prompt_ids) + 10
    assert batched.prompt_ids == alone.prompt_ids
    assert batched.text == alone.text and batched.response_ids == alone.response_ids
    assert torch.allclose(torch.tensor(batched.logprobs), torch.tensor(alone.logprobs), atol=1e-4)


def test_chunking_and_max_prompt_tokens(tiny_path, policy):
    sp = SamplingParams(max_new_tokens=6, greedy=True)
    small = HFPolicy(policy.model, tokenizer=policy.tokenizer)
    small.batch_size = 2
    a = [g.response_ids for g in policy.generate(REQS, sp)]
    b = [g.response_ids for g in small.generate(REQS, sp)]
    assert a == b
    capped = HFPolicy(tiny_path, max_prompt_tokens=10)
    g = capped.generate(REQS[:1], sp)[0]
    assert g.prompt_ids == policy.encode_prompt(REQS[0])[-10:]


def test_missing_model_path_errors(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model") as e:
        HFPolicy(missing)
    assert "config.json" in str(e.value) and "gguf" in str(e.value)
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty-folder.*config.json"):
        HFPolicy(empty)
    with pytest.raises(FileNotFoundError, match="model.gguf"):
        HFPolicy(empty, gguf_file="model.gguf")
