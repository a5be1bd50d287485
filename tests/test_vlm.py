"""The VLM policy (`hf` backend, tiny Qwen2-VL and Qwen2.5-VL): chats with images, batched generation,
log-probs, RL updates reaching the vision tower, the GAE critic seeing pixels, frame history, and
`groupwise rollout` / `train` end to end."""

import json

import numpy as np
import pytest
import torch

import envs
from agents.hf import HFPolicy
from agents.forward import sequence_logprobs
from agents.policy import Request, SamplingParams
from agents.prompts import PromptBuilder
from agents.vlm import (VLProcessor, chat_images, encode_chat, ensure_tiny_vlm, freeze_vision_tower, is_vlm_folder,
                        load_vlm, vision_parameters)
from algos.batching import Row, pixel_kwargs


def _obs(seed, **kw):
    env = envs.make("sokoban", obs_mode="image", **kw)
    obs, _ = env.reset(seed=seed)
    return obs


ARCH_CLASSES = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}


@pytest.fixture(scope="module", params=sorted(ARCH_CLASSES))
def vlm_dir(request, tmp_path_factory):
    """A tiny VLM of each family (the tests using it run once per architecture)."""
    texts = [_obs(s)["text"] for s in range(8)] + ["<think>go</think><action>up</action>"] * 8
    return ensure_tiny_vlm(tmp_path_factory.mktemp(f"tiny-{request.param}") / "model", texts, num_layers=2,
                           arch=request.param)


@pytest.fixture(scope="module")
def policy(vlm_dir):
    return HFPolicy(vlm_dir)


def _requests():
    """Image chats of different lengths (rooms of two sizes, different text) and a text-only chat."""
    prompt = PromptBuilder.for_env("sokoban", compact=True, history_length=0)
    out = []
    for seed, kw in [(0, {}), (1, {"dim_room": (7, 7)}), (2, {})]:
        o = _obs(seed, **kw)
        out.append(Request(messages=prompt.messages(o["text"] + " x" * seed, frames=[o["images"]])))
    out.append(Request(messages=[{"role": "user", "content": "no image here"}]))
    return out


def test_tiny_vlm_reopens_with_the_real_architecture(vlm_dir, policy):
    assert is_vlm_folder(vlm_dir)
    model, processor = load_vlm(vlm_dir)
    assert type(model).__name__ == ARCH_CLASSES[model.config.model_type] and vision_parameters(model)
    assert type(policy.model) is type(model)
    assert isinstance(processor, VLProcessor) and VLProcessor.get_attributes() == ["image_processor", "tokenizer"]
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    ids, mm = encode_chat(processor, _requests()[0].messages)
    n_pads = ids.count(model.config.image_token_id)
    assert n_pads == int(mm["image_grid_thw"].prod()) // 4 > 0  # pads expanded to the merged patch count
    assert policy.is_vlm and policy.encode_prompts(_requests()[:1])[0] == ids
    if model.config.model_type == "qwen2_5_vl":  # window attention really splits this image into windows
        vision = model.config.vision_config
        window = vision.window_size // vision.patch_size  # patches per window side
        assert vision.fullatt_block_indexes == [1] and int(mm["image_grid_thw"][0, 1:].max()) > window


def test_request_images_outside_the_chat_are_placed_in_it(policy):
    o = _obs(0)
    in_chat = Request(messages=PromptBuilder(template="{observation}").messages(o["text"], frames=[o["images"]]))
    beside = Request(messages=[{"role": "user", "content": o["text"]}], images=list(o["images"]))
    (a, b), (ma, mb) = policy.encode_requests([in_chat, beside])
    assert a == b and torch.equal(ma["pixel_values"], mb["pixel_values"])


def test_batched_generation_with_images_equals_one_by_one(policy):
    reqs = _requests()
    sp = SamplingParams(greedy=True, max_new_tokens=10)
    batched = policy.generate(reqs, sp)
    assert len({len(g.prompt_ids) for g in batched}) == len(reqs)  # really different lengths (left padding)
    for req, g in zip(reqs, batched):
        one = policy.generate([req], sp)[0]
        assert one.prompt_ids == g.prompt_ids and one.response_ids == g.response_ids
        assert np.allclose(one.logprobs, g.logprobs, atol=1e-4)


def test_generation_logprobs_match_recomputation(policy):
    reqs = _requests()
    gens = policy.generate(reqs, SamplingParams(temperature=1.0, max_new_tokens=12, seed=5))
    # the generation hands over the pixel inputs it ran with; training reuses them unprocessed
    assert sum(bool(g.pixel_inputs) for g in gens) == 3  # the text-only chat has none
    for r, g in zip(reqs, gens):
        again = policy.encode_requests([r])[1][0]
        assert g.pixel_inputs.keys() == again.keys()
        for key in again:
            assert torch.equal(g.pixel_inputs[key], again[key])
    rows = [Row(g.prompt_ids, g.response_ids, pixel_inputs=g.pixel_inputs) for g in gens]
    with torch.no_grad():
        logp, mask, _ = sequence_logprobs(policy.model, [r.prompt_ids for r in rows], [r.response_ids for r in rows],
                                          policy.pad_token_id, **pixel_kwargs(rows))
    for k, g in enumerate(gens):
        assert torch.allclose(logp[k, : len(g.logprobs)], torch.tensor(g.logprobs), atol=1e-4)
        assert int(mask[k].sum()) == len(g.response_ids)


def _rl_step(vlm_dir, frozen: bool):
    from algos.rl import RLTrainer
    from algos.train_config import TrainConfig

    policy = HFPolicy(vlm_dir)
    if frozen:
        freeze_vision_tower(policy.model)
    cfg = TrainConfig()
    cfg.rl.lr = 1e-2
    trainer = RLTrainer(cfg, policy, pool=None, prompt=None)
    reqs = _requests()[:3]
    gens = policy.generate(reqs, SamplingParams(max_new_tokens=6, seed=1))
    rows = [Row(g.prompt_ids, g.response_ids, advantage=a, pixel_inputs=g.pixel_inputs)
            for g, a in zip(gens, (1.0, -1.0, 0.5))]
    trainer.attach_logprobs(rows)
    vision = {n: p.detach().clone() for n, p in vision_parameters(policy.model)}
    head = policy.model.lm_head.weight.detach().clone()
    stats = trainer.update(rows, 0)
    moved = [n for n, p in vision_parameters(policy.model) if not torch.equal(p.detach(), vision[n])]
    return moved, len(vision), not torch.equal(policy.model.lm_head.weight.detach(), head), stats


def test_rl_update_reaches_the_vision_tower_unless_frozen(vlm_dir):
    moved, total, text_moved, stats = _rl_step(vlm_dir, frozen=False)
    assert text_moved and np.isfinite(stats["loss"])
    assert len(moved) == total  # every vision tensor (patch embedding, blocks, merger) got an update
    moved, _, text_moved, _ = _rl_step(vlm_dir, frozen=True)
    assert text_moved and moved == []


def test_prompt_carries_the_configured_number_of_frames():
    from agents.rollout import collect
    from agents.simple import RandomPolicy
    from envs.pool import EnvPool

    frames = [(np.full((4, 4, 3), i, np.uint8),) for i in range(4)]  # steps 0..3, step 3 current
    assert len(chat_images(PromptBuilder().messages("x", step=3, frames=frames))) == 1
    three = PromptBuilder(image_history=3).messages("x", step=3, frames=frames)
    assert [int(im[0, 0, 0]) for im in chat_images(three)] == [1, 2, 3]  # oldest first, current last
    assert "Image (step 1):" in str(three) and "Image (step 3):" in str(three)
    assert isinstance(PromptBuilder(image_history=0).messages("x", frames=frames)[0]["content"], str)

    prompt = PromptBuilder.for_env("sokoban", image_history=2)
    with EnvPool("sokoban", num_envs=2, num_workers=0, env_kwargs={"obs_mode": "image", "max_steps": 4}) as pool:
        ro = collect(pool, RandomPolicy(prompt.action_format, seed=0), [0, 1], 1, prompt=prompt)
    for s in ro.steps:
        assert len(chat_images(s.messages)) == min(s.turn + 1, 2)


def test_training_rollouts_keep_the_processed_images_and_others_do_not(policy):
    """A training collection keeps each step's pixel inputs (the update reuses them, tested for
    equality with the processor's output above); other collections keep only the frames."""
    from agents.rollout import collect
    from envs.pool import EnvPool

    prompt = PromptBuilder.for_env("sokoban", image_history=2)
    sp = SamplingParams(max_new_tokens=4, seed=0)
    with EnvPool("sokoban", num_envs=2, num_workers=0, env_kwargs={"obs_mode": "image", "max_steps": 2}) as pool:
        kept = collect(pool, policy, [0, 1], 1, sp, prompt=prompt, keep_pixel_inputs=True)
        plain = collect(pool, policy, [0, 1], 1, sp, prompt=prompt)
    assert kept.steps and all(s.pixel_inputs is None for s in plain.steps)
    for s in kept.steps:
        grid = s.pixel_inputs["image_grid_thw"]
        assert grid.shape[0] == len(chat_images(s.messages))  # one grid row per image in the chat
        assert s.pixel_inputs["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())
    assert "pixel_inputs" not in kept.trajectories[0].to_json()["steps"][0]  # JSON keeps the frames


def test_groupwise_rollout_with_a_vlm_folder(vlm_dir, tmp_path, capsys):
    from algos.cli import main
    from agents.records import read_jsonl

    out = tmp_path / "ro.jsonl"
    assert main(["rollout", "--env", "sokoban", "--policy", str(vlm_dir), "--episodes", "2", "--workers", "0",
                 "--env-kw", "obs_mode=image", "--env-kw", "max_steps=3", "--max-new-tokens", "6",
                 "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.split("wrote")[0])["episodes"] == 2
    steps = [s for t in read_jsonl(out) for s in t.steps]
    assert steps and all(len(chat_images(s.messages)) == 1 and s.response_ids for s in steps)


def test_groupwise_train_builds_a_tiny_vlm_and_takes_an_rl_step(tmp_path):
    from algos.train import main

    out = tmp_path / "run"
    code = main([f"out_dir={out}", "env.id=sokoban", "env.kwargs={obs_mode: image, max_steps: 4}", "rl.iterations=1",
                 "rl.tasks_per_iter=2", "rl.group_size=2", "rl.max_new_tokens=6", "sft.episodes=4", "sft.epochs=1",
                 "eval.episodes=2", "env.workers=0", "tensorboard=false", "progress=false"])
    assert code == 0
    assert is_vlm_folder(out / "base-model")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rl = [m for m in metrics if "train/rows" in m]
    assert rl and rl[0]["train/rows"] > 0 and np.isfinite(rl[0]["train/loss"])
    final = HFPolicy(out / "final-model")  # the trained VLM reopens, processor included
    assert final.is_vlm


@pytest.mark.parametrize("env_id,kwargs", [("ezpoints", "{}"), ("vision-qa", "{image_size: 128}")])
def test_tiny_vlm_trains_then_plays_the_image_envs(env_id, kwargs, tmp_path, capsys):
    from algos.cli import main as cli
    from agents.records import read_jsonl
    from algos.train import main as train

    out = tmp_path / "run"
    assert train([f"out_dir={out}", f"env.id={env_id}", f"env.kwargs={kwargs}", "rl.iterations=1",
                  "rl.tasks_per_iter=2", "rl.group_size=2", "rl.max_new_tokens=6", "sft.episodes=4", "sft.epochs=1",
                  "eval.episodes=2", "env.workers=0", "tensorboard=false", "progress=false"]) == 0
    assert is_vlm_folder(out / "base-model")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in m and np.isfinite(m["train/loss"]) for m in metrics)
    capsys.readouterr()
    traj = tmp_path / "ro.jsonl"
    assert cli(["rollout", "--env", env_id, "--policy", str(out / "final-model"), "--episodes", "2",
                "--workers", "0", "--max-new-tokens", "6", "--out", str(traj)] +
               (["--env-kw", "image_size=128"] if env_id == "vision-qa" else [])) == 0
    steps = [s for t in read_jsonl(traj) for s in t.steps]
    assert steps and all(len(chat_images(s.messages)) == 1 for s in steps)


def test_gae_critic_sees_the_pixels(policy):
    from algos.critic import Critic

    o = _obs(0)
    image = o["images"][0]
    prompt = PromptBuilder.for_env("sokoban", compact=True, history_length=0)
    chats = [prompt.messages(o["text"], frames=[[im]]) for im in (image, 255 - image)]
    (ids, a), (ids_b, b) = (encode_chat(policy.processor, c) for c in chats)
    assert ids == ids_b  # same size, so the very same prompt ids; only the pixels differ
    torch.manual_seed(0)
    critic = Critic(policy.model, policy.pad_token_id)
    torch.nn.init.normal_(critic.head.weight)
    v_a, v_b = critic.values([ids, ids], pixel_inputs=[a, b])
    assert abs(v_a - v_b) > 1e-4
    # left padding next to a longer image prompt and a text prompt changes nothing
    reqs = _requests()
    prompts, pixels = policy.encode_requests(reqs)
    batched = critic.values(prompts, pixel_inputs=pixels)
    alone = [critic.values([p], pixel_inputs=[mm])[0] for p, mm in zip(prompts, pixels)]
    np.testing.assert_allclose(batched, alone, atol=1e-4)


def test_groupwise_train_with_gae_on_image_sokoban(tmp_path):
    from algos.train import main

    out = tmp_path / "run"
    code = main([f"out_dir={out}", "env.id=sokoban", "env.kwargs={obs_mode: image, max_steps: 4}", "algo.name=gae",
                 "rl.iterations=1", "rl.tasks_per_iter=2", "rl.group_size=2", "rl.max_new_tokens=6",
                 "sft.episodes=4", "sft.epochs=1", "eval.episodes=2", "env.workers=0", "tensorboard=false",
                 "progress=false"])
    assert code == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rl = [m for m in metrics if "train/rows" in m]
    assert rl and rl[0]["train/rows"] > 0 and np.isfinite(rl[0]["train/critic_value_loss"])
