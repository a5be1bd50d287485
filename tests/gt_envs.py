"""A tiny question-answering env with a ground truth, for the IGPO / A2TGPO probe tests.

`QAEnv` ("test-qa"): the seed picks a question; the agent may write `clue` (the next of two clues
is shown, reward 0) or `answer: X` (the episode ends, reward 1 if X matches the answer up to case
and surrounding spaces, else 0). Anything else is an invalid action that still costs a turn; the
episode is truncated after `max_turns` turns. Every info carries `ground_truth` (the answer, or
with `aliases=True` a list of accepted spellings, canonical one first) unless
`give_ground_truth=False`; the answer step reports `reward_components` {"correct", "format"}.
Deterministic given the seed and the actions, like every groupwise env.
"""

from __future__ import annotations

from typing import Any

import envs
from envs.base import AgentEnv, observation_space

# (question, answer aliases (canonical first), clues)
QUESTIONS: tuple[tuple[str, tuple[str, ...], tuple[str, str]], ...] = (
    ("What is the capital of France?", ("Paris", "paris, france"),
     ("It lies on the Seine.", "Its name starts with P.")),
    ("Which planet is known as the red planet?", ("Mars", "planet mars"),
     ("It is the fourth planet from the sun.", "Its name starts with M.")),
    ("What is the largest ocean on Earth?", ("Pacific Ocean", "the pacific"),
     ("It borders Asia and the Americas.", "Its name starts with P.")),
    ("Who wrote Hamlet?", ("William Shakespeare", "shakespeare"),
     ("He was born in Stratford-upon-Avon.", "His surname starts with S.")),
)


class QAEnv(AgentEnv):
    """Ask for up to two clues, then answer; info["ground_truth"] holds the answer."""

    observation_space = observation_space()
    instructions = "Answer the question. Write 'clue' to get a clue, or 'answer: <your answer>' to answer."

    def __init__(self, max_turns: int = 3, give_ground_truth: bool = True, aliases: bool = False):
        self.max_turns = max_turns
        self.give_ground_truth = give_ground_truth
        self.aliases = aliases
        self.index = 0
        self.clues = 0
        self.turns = 0

    @property
    def answers(self) -> tuple[str, ...]:
        return QUESTIONS[self.index][1]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.index = int(self.np_random.integers(len(QUESTIONS)))
        self.clues = 0
        self.turns = 0
        return self._obs("Ask for a clue or answer."), self._info()

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        self.turns += 1
        text = action.strip() if isinstance(action, str) else ""
        reward, terminated, valid, extra = 0.0, False, True, {}
        if text.lower() == "clue":
            if self.clues < len(QUESTIONS[self.index][2]):
                note = f"Clue: {QUESTIONS[self.index][2][self.clues]}"
                self.clues += 1
            else:
                note = "No more clues."
        elif text.lower().startswith("answer:"):
            given = text[len("answer:"):].strip().lower()
            correct = given in {a.lower() for a in self.answers}
            reward, terminated = float(correct), True
            note = "Correct." if correct else "Wrong."
            extra["reward_components"] = {"correct": float(correct), "format": 1.0}
        else:
            valid = False
            note = "Write 'clue' or 'answer: <your answer>'."
        truncated = not terminated and self.turns >= self.max_turns
        info = self._info(won=reward > 0, valid_action=valid, **extra)
        return self._obs(note), reward, terminated, truncated, info

    def expert_action(self) -> str:
        return "clue" if self.clues == 0 else f"answer: {self.answers[0]}"

    def _obs(self, note: str) -> dict:
        question = QUESTIONS[self.index][0]
        shown = " ".join(QUESTIONS[self.index][2][: self.clues])
        return self.make_obs(f"Question: {question}\nClues: {shown or '(none)'}\n{note}",
                             anchor=f"q{self.index}|clues={self.clues}")

    def _info(self, **kw: Any) -> dict:
        if self.give_ground_truth:
            kw["ground_truth"] = list(self.answers) if self.aliases else self.answers[0]
        candidates = sorted({q[1][0] for q in QUESTIONS})
        return self.make_info(task=QUESTIONS[self.index][0],
                              admissible_actions=["clue"] + [f"answer: {c}" for c in candidates], **kw)


envs.register("test-qa", "tests.gt_envs:QAEnv", description="Two-clue question answering with a ground truth (tests).")
