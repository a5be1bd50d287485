"""The multi-turn rollout engine.

`collect` resets G copies of each task (same seed, so the same start state), then loops: build one
prompt per *running* episode from its memory, generate all of them in one batched call, parse the
actions, step only those environments, record a `StepRecord` per decision. Finished episodes are
never sent to the policy again.

`collect(..., mode="async")` records the same steps without the turn barrier: env steps stay in
flight (`pool.submit`/`pool.poll`), and whenever some have returned, their episodes' next turns are
generated as one batch while the others are still stepping.

With `probe_ground_truth=True` each turn also gets the IGPO / A2TGPO probe (algorithms.md §4.1):
before the turn is generated, the policy scores the env's ground truth as if it answered right
away, and the mean log-prob of the answer tokens lands on `StepRecord.probe`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from tqdm.auto import tqdm

from agents.policy import Policy, Request, SamplingParams
from agents.prompts import PromptBuilder
from agents.records import StepRecord, Trajectory
from envs.seeds import stream

# info keys worth keeping on each step record (the rest can be large or unserialisable)
_KEPT_INFO = ("won", "valid_action", "error", "failed", "task_type", "ground_truth", "score")

#: The thought of the probe's teacher-forced answer turn (IGPO's "Now there's enough information
#: to answer", algorithms.md §4.1), written in the env's own action format.
PROBE_THINK = "Now there's enough information to answer"


@dataclass
class Rollout:
    trajectories: list[Trajectory]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def steps(self) -> list[StepRecord]:
        return [s for t in self.trajectories for s in t.steps]


def collect(
    pool: Any,
    policy: Policy,
    seeds: Sequence[int],
    group_size: int,
    sampling: SamplingParams | None = None,
    prompt: PromptBuilder | None = None,
    max_turns: int = 1000,
    progress: bool = False,
    first_group_id: int = 0,
    probe_ground_truth: bool = False,
    mode: str = "sync",
    keep_pixel_inputs: bool = False,
) -> Rollout:
    """Play `group_size` episodes of each task seed with `policy`; return trajectories and metrics.

    The pool must hold at least `len(seeds) * group_size` environments. Group ids are
    `first_group_id + task index`; trajectory ids are the env slots offset by the group ids, unique
    within one call.

    mode: "sync" plays turn by turn: one batched generation for every running episode, then one
    batched env step, and so on. "async" (needs a pool with `submit`/`poll`, as EnvPool and
    RayEnvPool have) keeps env steps in flight and generates, as one batch, for whichever episodes'
    steps have returned while the others still step, so a slow episode holds up only itself.
    Both record the same StepRecords in the same order (prompts, turn indices, ids); with greedy
    decoding the content is the same too. With sampling it is not: the seed of a sync call is
    derived from the turn, that of an async micro-batch from its position in the sequence of
    micro-batches, and backends that draw one random stream per batch (HFPolicy) give a request
    different tokens in a different batch. Policies that need `expert_action` make `pool.call`
    wait for the other envs on the same worker.

    probe_ground_truth: before each turn, for every running episode whose env has reported
    `info["ground_truth"]` (a str, or a list of aliases: the first is used; the most recent value
    the env gave for the episode), store on the turn's record the policy's mean log-prob of the
    ground truth written as an answer in the env's action format after this turn's prompt
    (`policy.answer_logprobs`, one batched call per generation batch, rollout-time weights). Needs a
    policy with `answer_logprobs` (HFPolicy). Adds "time_probe" to the metrics.

    keep_pixel_inputs: VLM policies: keep each step's processed images (`StepRecord.pixel_inputs`)
    for training to reuse. Off by default: the tensors are tens of times larger than the frames the
    chat already holds, and evaluation and data collection have no use for them.
    """
    if mode not in ("sync", "async"):
        raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")
    if mode == "async" and not (callable(getattr(pool, "submit", None)) and callable(getattr(pool, "poll", None))):
        raise TypeError(f"collect(mode='async') needs a pool with submit() and poll(); {type(pool).__name__} has none")
    sampling = sampling or SamplingParams()
    prompt = prompt or PromptBuilder()
    if probe_ground_truth and not callable(getattr(policy, "answer_logprobs", None)):
        raise TypeError(f"collect(probe_ground_truth=True) needs a policy with answer_logprobs(); "
                        f"{type(policy).__name__} has none (use HFPolicy)")
    n = len(seeds) * group_size
    if n == 0:
        return Rollout([], {})
    if n > pool.num_envs:
        raise ValueError(f"{len(seeds)} tasks x group size {group_size} = {n} episodes, "
                         f"but the pool holds only {pool.num_envs} environments")
    t_start = time.perf_counter()
    play = _Play(pool, policy, prompt, sampling, probe_ground_truth, keep_pixel_inputs)
    running = play.start(seeds, group_size, first_group_id)
    bar = tqdm(total=n, desc="episodes", disable=not progress, leave=False)
    if mode == "sync":
        running = _play_sync(play, running, max_turns, bar)
    else:
        running = _play_async(play, running, max_turns, bar)
    for i in running:  # hit max_turns: the engine's own cap, reported as truncation
        play.trajs[i].truncated = True
    bar.close()
    for t in play.trajs:
        t.finish()
    wall = time.perf_counter() - t_start
    return Rollout(play.trajs, rollout_metrics(play.trajs, play.tokens, wall, play.timer))


def _play_sync(play: _Play, running: list[int], max_turns: int, bar: Any) -> list[int]:
    """Turn by turn: generate for every running episode, step them all, record; repeat."""
    turn = 0
    while running and turn < max_turns:
        pending = play.decide(running, play.turn_sampling(turn))
        t0 = time.perf_counter()
        results = play.pool.step({i: d.action for i, d in pending.items()})
        play.timer["env"] += time.perf_counter() - t0
        running = [i for i in running if not play.record(i, pending[i], results[i], bar)]
        turn += 1
    return running


def _play_async(play: _Play, running: list[int], max_turns: int, bar: Any) -> list[int]:
    """Keep env steps in flight; generate for the episodes whose steps came back, as one batch.

    Returns the episodes stopped by `max_turns`. The records are those of `_play_sync`: each
    episode's turns follow one another exactly as there, only the batches they share differ.
    """
    ready = list(running) if max_turns > 0 else []
    capped = [] if ready else list(running)
    decided: dict[int, _Decision] = {}
    micro_batch = 0
    while ready or decided:
        if ready:
            # A fresh seed per micro-batch (not per turn: two micro-batches of the same turn would
            # otherwise draw the same random stream, and copies of one state would act alike).
            new = play.decide(sorted(ready), play.turn_sampling(micro_batch, "micro_batch"))
            micro_batch += 1
            ready = []
            play.pool.submit({i: d.action for i, d in new.items()})
            decided.update(new)
        t0 = time.perf_counter()
        results = play.pool.poll(None)  # at least one; everything that finished meanwhile too
        play.timer["env"] += time.perf_counter() - t0
        for i in sorted(results):
            d = decided.pop(i)
            if play.record(i, d, results[i], bar):
                continue
            (ready if d.turn + 1 < max_turns else capped).append(i)
    return capped


@dataclass
class _Decision:
    """A turn generated for one episode, waiting for its env step."""

    turn: int
    request: Request
    generation: Any
    parsed: Any
    probe: float | None

    @property
    def action(self) -> str:
        return self.parsed.action or ""


class _Play:
    """The episodes of one `collect` call and the per-turn work both modes share."""

    def __init__(self, pool: Any, policy: Policy, prompt: PromptBuilder, sampling: SamplingParams,
                 probe: bool, keep_pixels: bool = False):
        self.pool, self.policy, self.prompt, self.sampling = pool, policy, prompt, sampling
        self.keep_pixels = keep_pixels
        self.probe_affixes = _probe_affixes(prompt) if probe else None
        self.timer = {"generation": 0.0, "env": 0.0}
        if probe:
            self.timer["probe"] = 0.0
        self.tokens = 0
        self.trajs: list[Trajectory] = []
        self.observations: list[dict] = []
        self.infos: list[dict] = []
        self.truths: dict[int, str] = {}  # episode -> latest ground truth its env reported
        # episode -> images of its recent observations (oldest first), as many as the prompt carries
        self.frames: dict[int, list[tuple]] = {}

    def start(self, seeds: Sequence[int], group_size: int, first_group_id: int) -> list[int]:
        """Reset G copies of each task; return the episodes that started (a failed reset ends one)."""
        env_seeds = [int(s) for s in seeds for _ in range(group_size)]
        t0 = time.perf_counter()
        self.observations, self.infos = self.pool.reset(seeds=env_seeds)
        self.timer["env"] += time.perf_counter() - t0
        n = len(env_seeds)
        self.trajs = [
            Trajectory(traj_id=first_group_id * group_size + i, group_id=first_group_id + i // group_size,
                       seed=env_seeds[i], task=str(self.infos[i].get("task", "")))
            for i in range(n)
        ]
        self.frames = {i: [] for i in range(n)}
        running = []
        for i in range(n):
            if self.infos[i].get("failed"):
                self.trajs[i].error, self.trajs[i].truncated = self.infos[i].get("error", "reset failed"), True
            else:
                running.append(i)
        return running

    def turn_sampling(self, k: int, purpose: str = "turn") -> SamplingParams:
        # a fresh stream per call (turn, or async micro-batch), else every call would replay one stream
        if self.sampling.seed is None:
            return self.sampling
        return replace(self.sampling, seed=stream(self.sampling.seed, purpose, k))

    def decide(self, episodes: list[int], sampling: SamplingParams) -> dict[int, _Decision]:
        """Build the episodes' prompts, generate them as one batch, parse the actions."""
        obs, infos = self.observations, self.infos
        for i in episodes:
            _remember_frame(self.frames[i], obs[i], self.prompt.image_history)
        requests = [_request(self.prompt, self.trajs[i], obs[i], infos[i], self.frames[i]) for i in episodes]
        if getattr(self.policy, "needs_expert_action", False):
            t0 = time.perf_counter()
            for r, a in zip(requests, self.pool.call("expert_action", episodes)):
                r.meta["expert_action"] = a
            self.timer["env"] += time.perf_counter() - t0

        probes: dict[int, float] = {}
        if self.probe_affixes is not None:
            for i in episodes:
                _remember_truth(self.truths, i, infos[i])
            t0 = time.perf_counter()
            probes = _probe(self.policy, self.probe_affixes, episodes, requests, self.truths)
            self.timer["probe"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        generations = self.policy.generate(requests, sampling)
        self.timer["generation"] += time.perf_counter() - t0
        return {i: _Decision(len(self.trajs[i].steps), req, gen, self.prompt.action_format.parse(gen.text),
                             probes.get(i))
                for i, req, gen in zip(episodes, requests, generations)}

    def record(self, i: int, d: _Decision, result: Any, bar: Any) -> bool:
        """Record episode `i`'s step and take in its new observation; True when the episode ended."""
        obs, reward, terminated, truncated, info = result
        traj, gen, p = self.trajs[i], d.generation, d.parsed
        self.tokens += len(gen.response_ids)
        traj.steps.append(StepRecord(
            group_id=traj.group_id, traj_id=traj.traj_id, turn=d.turn, messages=d.request.messages,
            prompt_ids=list(gen.prompt_ids), response_ids=list(gen.response_ids),
            logprobs=[float(x) for x in gen.logprobs], response=gen.text, action=p.action,
            well_formed=p.well_formed, parse_reason=p.reason,
            valid=bool(p.well_formed and info.get("valid_action", True)),
            reward=float(reward), anchor=str(self.observations[i]["anchor"]),
            observation=self.observations[i]["text"], done=bool(terminated or truncated),
            truncated_response=gen.truncated,
            info={k: info[k] for k in _KEPT_INFO if k in info},
            probe=d.probe, components=_components(info),
            pixel_inputs=(gen.pixel_inputs or None) if self.keep_pixels else None,
        ))
        self.observations[i], self.infos[i] = obs, info
        if terminated or truncated:
            traj.won, traj.terminated, traj.truncated = bool(info.get("won")), bool(terminated), bool(truncated)
            traj.error = info.get("error")
            bar.update(1)
            return True
        return False


def _remember_frame(frames: list[tuple], obs: dict, keep: int) -> None:
    """Append the observation's images to an episode's frames, keeping the last `keep` steps."""
    frames.append(tuple(obs.get("images") or ()))
    if len(frames) > max(keep, 1):
        del frames[: len(frames) - max(keep, 1)]


def _request(prompt: PromptBuilder, traj: Trajectory, obs: dict, info: dict,
             frames: Sequence[tuple] = ()) -> Request:
    """The turn's request. Image observations go into the chat as image parts (the last
    `prompt.image_history` steps' images), and `Request.images` lists the same images in order."""
    history = [(s.observation, s.action if s.action is not None else "(invalid)") for s in traj.steps]
    admissible = info.get("admissible_actions")
    if not frames and obs.get("images"):
        frames = [tuple(obs["images"])]
    messages = prompt.messages(obs["text"], history, step=len(traj.steps), admissible=admissible, frames=frames)
    images = [p["image"] for m in messages if isinstance(m["content"], list)
              for p in m["content"] if p.get("type") == "image"]
    return Request(messages=messages, images=images, meta={"admissible_actions": admissible})


def _probe_affixes(prompt: PromptBuilder) -> tuple[str, str]:
    """(prefix, suffix) around the answer in the env's action format, e.g. ("<think>..</think><action>",
    "</action>"), found by formatting a sentinel answer (works for any format that writes the action
    verbatim)."""
    sentinel = "\x00GROUNDTRUTH\x00"
    text = prompt.action_format.format(action=sentinel, think=PROBE_THINK)
    if text.count(sentinel) != 1:
        raise ValueError(f"{type(prompt.action_format).__name__}.format() does not write the action verbatim "
                         "exactly once; the ground-truth probe cannot locate the answer span")
    prefix, suffix = text.split(sentinel)
    return prefix, suffix


def _remember_truth(truths: dict[int, str], i: int, info: dict) -> None:
    gt = info.get("ground_truth")
    if isinstance(gt, (list, tuple)):
        gt = gt[0] if gt else None
    if isinstance(gt, str) and gt:
        truths[i] = gt


def _probe(policy: Any, affixes: tuple[str, str], running: list[int], requests: list[Request],
           truths: dict[int, str]) -> dict[int, float]:
    """Ground-truth probes of the running episodes that have a ground truth (one batched call)."""
    picked = [(i, r) for i, r in zip(running, requests) if i in truths]
    if not picked:
        return {}
    prefix, suffix = affixes
    values = policy.answer_logprobs([r for _, r in picked], [prefix] * len(picked),
                                    [truths[i] for i, _ in picked], [suffix] * len(picked))
    # a non-finite probe is no probe (the estimators skip it either way; None keeps JSONL valid)
    return {i: float(v) for (i, _), v in zip(picked, values) if math.isfinite(v)}


def _components(info: dict) -> dict[str, float] | None:
    comps = info.get("reward_components")
    if not comps:
        return None
    return {str(k): float(v) for k, v in comps.items()}


def success_by_task_type(trajs: Sequence[Trajectory], counts: bool = False) -> dict[str, float]:
    """"success/<type>" for envs that report `info["task_type"]` (ALFWorld's six task types), and
    with `counts` "episodes/<type>" too (so that evaluations can be pooled)."""
    outcomes: dict[str, list[bool]] = {}
    for t in trajs:
        if t.error is not None:  # the env failed, not the policy (see rollout_metrics)
            continue
        task_type = t.steps[0].info.get("task_type") if t.steps else None
        if task_type:
            outcomes.setdefault(str(task_type), []).append(t.won)
    out = {f"success/{k}": sum(v) / len(v) for k, v in sorted(outcomes.items())}
    if counts:
        out.update({f"episodes/{k}": float(len(v)) for k, v in sorted(outcomes.items())})
    return out


def rollout_metrics(trajs: Sequence[Trajectory], tokens: int, wall: float, timer: dict[str, float]) -> dict[str, float]:
    """Success, return, length, invalid-action rate, tokens and the wall-time split of a collection
    (plus "time_probe" when the ground-truth probe ran, "success/<type>" per task type, and the
    mean final `info["score"]` for envs that grade the outcome).

    Episodes whose env failed (raised, hung, lost its worker: `Trajectory.error`) are counted in
    "failed_episodes" and left out of the success, return and score: they say nothing of the policy.
    """
    played = [t for t in trajs if t.error is None]
    n, n_played = max(len(trajs), 1), max(len(played), 1)
    steps = [s for t in trajs for s in t.steps]
    n_steps = max(len(steps), 1)
    other = max(wall - timer["generation"] - timer["env"] - timer.get("probe", 0.0), 0.0)
    extra = {"time_probe": timer["probe"]} if "probe" in timer else {}
    extra.update(success_by_task_type(trajs))
    scores = [t.steps[-1].info.get("score") for t in played if t.steps]
    if any(s is not None for s in scores):  # envs with a graded outcome (WebShop): no outcome scores 0
        extra["score"] = sum(s or 0.0 for s in scores) / n_played
    return {
        "success": sum(t.won for t in played) / n_played,
        "return": sum(t.episode_return for t in played) / n_played,
        "steps": len(steps) / n,
        "invalid_rate": sum(not s.valid for s in steps) / n_steps,
        "malformed_rate": sum(not s.well_formed for s in steps) / n_steps,
        "failed_episodes": float(sum(t.error is not None for t in trajs)),
        "episodes": float(len(trajs)),
        "tokens_generated": float(tokens),
        "time_total": wall,
        "time_generation": timer["generation"],
        "time_env": timer["env"],
        "time_engine": other,
        "engine_share": other / wall if wall > 0 else 0.0,
        **extra,
    }
