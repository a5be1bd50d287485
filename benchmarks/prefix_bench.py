"""Plain vs prefix-shared forward+backward (algos/prefix_forward.py, algorithms.md §15), side by side.

Model: the tiny Qwen2 architecture of `agents.tiny` (hidden 128, 4 layers, 4/2 heads, vocab 1024),
randomly initialised; token ids are random (the cost does not depend on them).

Synthetic settings (one batch = `--groups` prompts x `--G` responses = one trainer micro-batch):
    long      prompts of 200-400 tokens, responses of 16 tokens
    sokoban   Sokoban's default prompt (compact prompt, history_length=0): 178-192 tokens with the
              tiny tokenizer trained on Sokoban episodes, responses of 6 tokens (`<action>up</action>`
              + EOS)
    short     prompts of 16-32 tokens, responses of 16 tokens (where sharing buys little)
For each: median / min time of the trainer's step (forward with entropy + backward of a
policy-gradient-like loss) and of a no-grad forward (old log-probs), plain `sequence_logprobs` vs
`shared_prefix_logprobs`, interleaved; the §15 linear-token and attention-score ratios of the batch;
and the largest log-prob difference between the two.

`--rollout` adds a real Sokoban batch (expert policy with noise, group size G, history_length=0):
how much of it shares prompts beyond turn 0, and the time of one update pass over it with the
trainer's batching with shuffled rows (minibatches of 256, micro-batches of 64) and the plain
forward vs prompt-block minibatches (`by_prompt=True`, the trainer's default) + the shared forward.

Runs single-threaded by default (`--threads`): on a shared 2-core machine multi-threaded timings
swing by several x with other people's load, single-threaded ones are stable.

    python benchmarks/prefix_bench.py [--G 8] [--groups 8] [--repeats 5] [--rollout]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.forward import sequence_logprobs  # noqa: E402
from algos.prefix_forward import (  # noqa: E402
    prefix_share_stats,
    shared_prefix_logprobs,
)


def parse_range(s: str) -> tuple[int, int]:
    a, _, b = s.partition("-")
    lo, hi = int(a), int(b or a)
    if lo < 2 or hi < lo:
        raise argparse.ArgumentTypeError(f"bad length range {s!r} (need 2 <= lo <= hi)")
    return lo, hi


def make_model(args):
    from transformers import Qwen2Config

    from agents.tiny import init_model

    cfg = Qwen2Config(vocab_size=1024, hidden_size=args.hidden, intermediate_size=3 * args.hidden,
                      num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=True, use_sliding_window=False,
                      attn_implementation=args.attn)
    return init_model(cfg, seed=0)


def make_batch(rng: random.Random, groups: int, G: int, p_range, r_range, vocab: int = 1024):
    prompts, responses = [], []
    for _ in range(groups):
        p = [rng.randrange(vocab) for _ in range(rng.randint(*p_range))]
        for _ in range(G):
            prompts.append(p)
            responses.append([rng.randrange(vocab) for _ in range(rng.randint(*r_range))])
    order = list(range(len(prompts)))
    rng.shuffle(order)
    return [prompts[i] for i in order], [responses[i] for i in order]


def train_step(fn, model, prompts, responses, adv):
    logp, mask, ent = fn(model, prompts, responses, 0, return_entropy=True)
    m = mask.float()
    loss = -(logp * adv[: len(prompts), None] * m).sum() / m.sum() - 0.01 * (ent * m).sum() / m.sum()
    loss.backward()


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def bench_setting(model, name, prompts, responses, repeats):
    adv = torch.randn(len(prompts), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = sequence_logprobs(model, prompts, responses, 0)[0]
        b = shared_prefix_logprobs(model, prompts, responses, 0)[0]
    err = float((a - b).abs().max())
    fns = {"plain": sequence_logprobs, "shared": shared_prefix_logprobs}
    times = {(k, mode): [] for k in fns for mode in ("step", "fwd")}
    for rep in range(repeats + 1):  # first round is warm-up
        for k, fn in fns.items():
            model.zero_grad(set_to_none=True)
            t_step = timed(lambda: train_step(fn, model, prompts, responses, adv))
            with torch.no_grad():
                t_fwd = timed(lambda: fn(model, prompts, responses, 0))
            if rep:
                times[(k, "step")].append(t_step)
                times[(k, "fwd")].append(t_fwd)
    model.zero_grad(set_to_none=True)
    st = prefix_share_stats(prompts, responses)
    med = {k: statistics.median(v) for k, v in times.items()}
    mn = {k: min(v) for k, v in times.items()}
    return {
        "setting": name, "rows": len(prompts),
        "P": f"{min(map(len, prompts))}-{max(map(len, prompts))}",
        "S": f"{min(map(len, responses))}-{max(map(len, responses))}",
        "plain_step": med[("plain", "step")], "shared_step": med[("shared", "step")],
        "plain_step_min": mn[("plain", "step")], "shared_step_min": mn[("shared", "step")],
        "plain_fwd": med[("plain", "fwd")], "shared_fwd": med[("shared", "fwd")],
        "token_ratio": st["token_ratio"], "attn_ratio": st["attn_ratio"], "max_err": err,
    }


def print_table(results):
    print("| setting | rows | P | S | step plain (s) | step shared (s) | step time ratio | speed-up "
          "| fwd plain (s) | fwd shared (s) | fwd ratio | token ratio | attn ratio | max abs Δlogp |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = r["shared_step"] / r["plain_step"]
        print(f"| {r['setting']} | {r['rows']} | {r['P']} | {r['S']} | {r['plain_step']:.3f} "
              f"| {r['shared_step']:.3f} | {ratio:.3f} | {1 / ratio:.2f}x | {r['plain_fwd']:.3f} "
              f"| {r['shared_fwd']:.3f} | {r['shared_fwd'] / r['plain_fwd']:.3f} | {r['token_ratio']:.3f} "
              f"| {r['attn_ratio']:.3f} | {r['max_err']:.1e} |")
    print("\n(step = forward with entropy + backward, median of the repeats; min step time ratio: "
          + ", ".join(f"{r['setting']} {r['shared_step_min'] / r['plain_step_min']:.3f}" for r in results) + ")")


# --------------------------------------------------------------------------------------------
# a real Sokoban batch


def sokoban_rows(G: int, tasks: int, seed: int = 0):
    import tempfile

    from transformers import AutoTokenizer

    from agents.prompts import PromptBuilder
    from agents.rollout import collect
    from agents.simple import ExpertPolicy
    from agents.tiny import ensure_tiny_model, env_corpus
    from algos.batching import Row, chat_prompt_ids, response_ids_for
    from envs.pool import EnvPool

    folder = Path(tempfile.gettempdir()) / "groupwise-prefix-bench" / "sokoban-compact"
    path = ensure_tiny_model(folder, env_corpus("sokoban", 0, compact=True))
    tok = AutoTokenizer.from_pretrained(str(path))
    prompt = PromptBuilder.for_env("sokoban", compact=True, history_length=0)
    with EnvPool("sokoban", num_envs=tasks * G, num_workers=0) as pool:
        ro = collect(pool, ExpertPolicy(prompt.action_format, noise=0.3, seed=seed),
                     list(range(seed, seed + tasks)), group_size=G, prompt=prompt)
    return [Row(chat_prompt_ids(tok, s.messages), response_ids_for(tok, s.response), turn=s.turn)
            for s in ro.steps]


def bench_rollout(model, args):
    from algos.batching import micro_batches, minibatches

    t0 = time.perf_counter()
    rows = sokoban_rows(args.G, args.rollout_tasks)
    t_collect = time.perf_counter() - t0
    turn0 = sum(1 for r in rows if r.turn == 0)
    st = prefix_share_stats([r.prompt_ids for r in rows], [r.response_ids for r in rows])

    def plain_micro():
        return [mi for mb in minibatches(rows, 256, random.Random(0)) for mi in micro_batches(mb, 64)]

    def shared_micro():
        return [mi for mb in minibatches(rows, 256, random.Random(0), by_prompt=True)
                for mi in micro_batches(mb, 64)]

    def micro_ratio(micros):
        s = [prefix_share_stats([r.prompt_ids for r in m], [r.response_ids for r in m]) for m in micros]
        return sum(x["shared_tokens"] for x in s) / sum(x["plain_tokens"] for x in s)

    pm, sm = plain_micro(), shared_micro()
    adv = torch.randn(max(len(m) for m in pm + sm), generator=torch.Generator().manual_seed(0))

    def run(fn, micros):
        model.zero_grad(set_to_none=True)
        for m in micros:
            train_step(fn, model, [r.prompt_ids for r in m], [r.response_ids for r in m], adv)

    tp, ts = [], []
    for _ in range(max(args.rollout_repeats, 1)):  # the model is already warm from the synthetic settings
        tp.append(timed(lambda: run(sequence_logprobs, pm)))
        ts.append(timed(lambda: run(shared_prefix_logprobs, sm)))
    model.zero_grad(set_to_none=True)
    print(f"\nReal Sokoban batch ({args.rollout_tasks} tasks x G={args.G}, expert policy noise 0.3, "
          f"history_length=0; built + collected in {t_collect:.1f}s): {st['rows']} rows, "
          f"{st['distinct_prompts']} distinct prompts, {st['shared_rows']} rows in {st['shared_groups']} shared groups, "
          f"{turn0} turn-0 rows.\n")
    print("| batching | micro-batches | token ratio | update pass (s) |")
    print("|---|---|---|---|")
    print(f"| shuffled rows (minibatches 256, micro 64), plain forward | {len(pm)} | 1.000 "
          f"| {statistics.median(tp):.3f} |")
    print(f"| shuffled rows, shared forward (no run; token ratio only) | {len(pm)} | {micro_ratio(pm):.3f} | – |")
    print(f"| prompt-block minibatches, shared forward | {len(sm)} | {micro_ratio(sm):.3f} "
          f"| {statistics.median(ts):.3f} |")
    print(f"\n(whole-batch token ratio {st['token_ratio']:.3f}, attention ratio {st['attn_ratio']:.3f}; "
          f"update pass time ratio {statistics.median(ts) / statistics.median(tp):.3f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--G", type=int, default=8, help="responses per prompt")
    ap.add_argument("--groups", type=int, default=8, help="distinct prompts per batch (rows = groups x G)")
    ap.add_argument("--prompt-len", type=parse_range, default=(200, 400), help="long setting prompt lengths lo-hi")
    ap.add_argument("--resp-len", type=parse_range, default=(16, 16), help="long setting response lengths lo-hi")
    ap.add_argument("--sokoban-prompt-len", type=parse_range, default=(178, 192))
    ap.add_argument("--sokoban-resp-len", type=parse_range, default=(6, 6))
    ap.add_argument("--short-prompt-len", type=parse_range, default=(16, 32))
    ap.add_argument("--short-resp-len", type=parse_range, default=(16, 16))
    ap.add_argument("--settings", default="long,sokoban,short", help="comma-separated subset of long,sokoban,short")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = leave torch's default)")
    ap.add_argument("--rollout", action="store_true", help="also run a real Sokoban batch (about +40 s)")
    ap.add_argument("--rollout-tasks", type=int, default=16)
    ap.add_argument("--rollout-repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = make_model(args)
    model.train()
    ranges = {"long": (args.prompt_len, args.resp_len), "sokoban": (args.sokoban_prompt_len, args.sokoban_resp_len),
              "short": (args.short_prompt_len, args.short_resp_len)}
    print(f"tiny Qwen2 (hidden {args.hidden}, {args.layers} layers, {args.attn}), {torch.get_num_threads()} thread(s), "
          f"{args.groups} prompts x G={args.G}, {args.repeats} repeats\n")
    results = []
    for i, name in enumerate(s.strip() for s in args.settings.split(",") if s.strip()):
        p_range, r_range = ranges[name]
        prompts, responses = make_batch(random.Random(args.seed + i), args.groups, args.G, p_range, r_range)
        results.append(bench_setting(model, name, prompts, responses, args.repeats))
    print_table(results)
    if args.rollout:
        bench_rollout(model, args)


if __name__ == "__main__":
    main()
