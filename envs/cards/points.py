"""EZPoints and Points24: type a formula over the cards' numbers that equals the target, token by token."""

from __future__ import annotations

from collections import Counter

import numpy as np
from PIL import ImageDraw

from envs.cards.base import _CardGameEnv, _check_int
from envs.cards.deck import Card, parse_card, random_card
from envs.cards.formula import evaluate, solutions
from envs.cards.render import _font, _wrapped, draw_row


class _FormulaEnv(_CardGameEnv):
    """Type a formula over the cards' numbers, one token per step, then "=".

    Rewards (gym-cards): 0 for a legal token; `illegal_penalty` (-1) for a token that is not an
    action or a number not on an unused card, with the formula unchanged; on "=" `win_reward` (+10)
    when the formula equals the target and uses every card, else -1. Every step counts towards
    `max_steps`; the step that reaches it without "=" ends the episode (truncated) with reward -1,
    the suite's time-limit reward.
    """

    OPERATORS = ""
    N_CARDS = 0

    def __init__(self, target_points: int, max_steps: int, faces_as_10: bool, obs_mode: str,
                 image_size: int, render_mode: str | None, win_reward: float, illegal_penalty: float):
        super().__init__(obs_mode, image_size, max_steps, render_mode)
        self.target_points = _check_int("target_points", target_points, 1)
        self.faces_as_10 = bool(faces_as_10)
        self.win_reward = float(win_reward)
        self.illegal_penalty = float(illegal_penalty)
        top = 10 if self.faces_as_10 else 13
        self.ACTIONS = tuple(str(n) for n in range(1, top + 1)) + tuple(self.OPERATORS) + ("=",)
        self.cards: tuple[Card, ...] = ()
        self.formula: list[str] = []

    def _deal(self, rng: np.random.Generator) -> tuple[Card, ...]:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Deal a new hand, or the cards in `options={"cards": ["3H", "K", ...]}`."""
        super().reset(seed=seed)
        if options and options.get("cards") is not None:
            cards = tuple(parse_card(c, self.np_random) for c in options["cards"])
            if len(cards) != self.N_CARDS:
                raise ValueError(f"options['cards'] has {len(cards)} cards; {type(self).__name__} plays "
                                 f"{self.N_CARDS}")
            self.cards = cards
        else:
            self.cards = self._deal(self.np_random)
        self.formula, self._steps, self._started, self._over = [], 0, True, False
        return self._obs(), self._info(valid_action=True)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        token = self._begin_step(action)
        valid = token is not None and token in self.legal_actions()
        terminated, won, reward = False, False, 0.0
        if not valid:
            reward = self.illegal_penalty
        elif token == "=":
            won = self.is_solved()
            reward = self.win_reward if won else -1.0
            terminated = True
        else:
            self.formula.append(token)
        truncated = not terminated and self._steps >= self.max_steps
        if truncated:
            reward = -1.0
        self._over = terminated or truncated
        return self._obs(), reward, terminated, truncated, self._info(valid, won=won)

    # -- rules ---------------------------------------------------------------------------------

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(c.value(self.faces_as_10) for c in self.cards)

    def unused(self) -> Counter:
        """Card numbers not yet written into the formula (a multiset)."""
        return Counter(self.values) - Counter(int(t) for t in self.formula if t.isdigit())

    def legal_actions(self) -> list[str]:
        """Operators and "=" are always legal (the suite checks only numbers); a number is legal
        while an unused card shows it."""
        left = self.unused()
        return [a for a in self.ACTIONS if not a.isdigit() or left[int(a)] > 0]

    def is_solved(self) -> bool:
        """Whether the formula uses every card and equals the target."""
        return not +self.unused() and evaluate(self.formula) == self.target_points

    def expert_action(self) -> str:
        """The next token of the shortest solution that extends the current formula; "=" when the
        formula is complete, or when no solution extends it (the hand is unsolvable, or the formula
        left the solver's forms), which ends the episode."""
        self._require_started()
        if self.is_solved():
            return "="
        n = len(self.formula)
        for sol in solutions(self.values, self.target_points, self.OPERATORS.replace("(", "").replace(")", "")):
            if list(sol[:n]) == self.formula and len(sol) > n:
                return sol[n]
        return "="

    # -- observation ---------------------------------------------------------------------------

    @property
    def task(self) -> str:
        return (f"Make {self.target_points} from the {self.N_CARDS} cards: build a formula that uses each "
                f"card's number exactly once, one token per turn, then write '='.")

    def _face_rule(self) -> str:
        return "J, Q and K count as 10, A as 1." if self.faces_as_10 else "A counts as 1, J 11, Q 12, K 13."

    def _formula_text(self) -> str:
        return "".join(self.formula) or "(empty)"

    def _anchor(self) -> str:
        return f"cards={','.join(c.label for c in self.cards)}|formula={''.join(self.formula)}"

    def _state_text(self) -> str:
        cards = ", ".join(f"{c.name} ({c.value(self.faces_as_10)})" for c in self.cards)
        unused = ", ".join(str(v) for v in sorted(self.unused().elements())) or "none"
        return (f"Cards: {cards}. {self._face_rule()} Current formula: {self._formula_text()}. "
                f"Numbers still unused: {unused}.")

    def _image_text(self) -> str:
        return (f"The image shows the cards and, below them, the formula so far. {self._face_rule()} "
                f"Current formula: {self._formula_text()}.")

    def _draw(self, draw: ImageDraw.ImageDraw, size: int) -> None:
        bottom = draw_row(draw, self.cards, size * 0.06, size, max_width=size * 0.36)
        font = _font(size * 0.065)
        y = bottom + size * 0.05
        lines = _wrapped(draw, ["Formula:", *self.formula], font, size * 0.92)
        for line in lines:
            draw.text((size * 0.04, y), line, fill=(255, 255, 255), font=font)
            y += size * 0.08


class EZPointsEnv(_FormulaEnv):
    """EZPoints: two cards; write a formula equal to 12 with "+" and "*", then "=".

    Deals follow gym-cards: the first card is 2..K, the second completes the target by addition,
    or (half the time, when the first value divides it) by multiplication; the order is then
    shuffled, so every hand is solvable. Defaults: 5 steps, J/Q/K count as 10.
    """

    OPERATORS = "+*"
    N_CARDS = 2
    instructions = (
        "EZPoints: two playing cards are shown. Build a formula that equals 12 using each card's number "
        "exactly once, one token per turn, then finish with '='. Tokens: the numbers 1 to 10, '+', '*' and "
        "'='. J, Q and K count as 10, A as 1. Each token is appended to the formula. A number that is not on "
        "an unused card is illegal: -1 and the formula stays as it was. '=' ends the game: +10 if the "
        "formula equals 12 and uses both cards, otherwise -1. At most 5 turns."
    )

    def __init__(self, target_points: int = 12, max_steps: int = 5, obs_mode: str = "image",
                 image_size: int = 300, render_mode: str | None = None, win_reward: float = 10.0,
                 illegal_penalty: float = -1.0):
        super().__init__(target_points, max_steps, True, obs_mode, image_size, render_mode, win_reward,
                         illegal_penalty)
        t = self.target_points
        # First-card values whose partner card (1..10) can complete the target.
        self._firsts = [v for v in range(2, 11) if 1 <= t - v <= 10 or (t % v == 0 and 1 <= t // v <= 10)]
        if not self._firsts:
            raise ValueError(f"target_points={t} cannot be made from two cards worth 1-10 with + or *; "
                             f"choose a target between 3 and 20, or a product such as 36")

    def _deal(self, rng: np.random.Generator) -> tuple[Card, ...]:
        t = self.target_points
        while True:
            first = random_card(rng, int(rng.integers(2, 14)))
            v = first.value()
            if v in self._firsts:
                break
        product_ok = t % v == 0 and 1 <= t // v <= 10
        sum_ok = 1 <= t - v <= 10
        use_product = product_ok and (not sum_ok or rng.random() < 0.5)
        partner = t // v if use_product else t - v
        # A 10 may be drawn as any ten-valued card; they all count as 10.
        rank = int(rng.choice([10, 11, 12, 13])) if partner == 10 else partner
        second = random_card(rng, rank)
        return (second, first) if rng.random() < 0.5 else (first, second)


class Points24Env(_FormulaEnv):
    """Points24: four cards; write a formula equal to 24 with + - * / ( ), then "=".

    Cards are drawn uniformly from an infinite deck. gym-cards deals unsolvable hands too; here
    `solvable_only=True` (default) redraws until a solution exists. `faces_as_10=False` counts
    J, Q, K as 11, 12, 13 and adds the tokens "11".."13". Defaults: 20 steps.
    """

    OPERATORS = "+-*/()"
    N_CARDS = 4
    instructions = (
        "Points24: four playing cards are shown. Build a formula that equals 24 using each card's number "
        "exactly once, one token per turn, then finish with '='. Tokens: the numbers 1 to 10, '+', '-', '*', "
        "'/', '(', ')' and '='. J, Q and K count as 10, A as 1. Each token is appended to the formula. A "
        "number that is not on an unused card is illegal: -1 and the formula stays as it was. '=' ends the "
        "game: +10 if the formula equals 24 and uses all four cards, otherwise -1. At most 20 turns."
    )

    def __init__(self, target_points: int = 24, max_steps: int = 20, faces_as_10: bool = True,
                 solvable_only: bool = True, obs_mode: str = "image", image_size: int = 300,
                 render_mode: str | None = None, win_reward: float = 10.0, illegal_penalty: float = -1.0,
                 max_deals: int = 1000):
        super().__init__(target_points, max_steps, faces_as_10, obs_mode, image_size, render_mode, win_reward,
                         illegal_penalty)
        self.solvable_only = bool(solvable_only)
        self.max_deals = _check_int("max_deals", max_deals, 1)

    def _deal(self, rng: np.random.Generator) -> tuple[Card, ...]:
        for _ in range(self.max_deals):
            cards = tuple(random_card(rng) for _ in range(self.N_CARDS))
            values = tuple(c.value(self.faces_as_10) for c in cards)
            if not self.solvable_only or solutions(values, self.target_points):
                return cards
        raise RuntimeError(f"no solvable hand for target_points={self.target_points} in {self.max_deals} deals; "
                           f"choose a reachable target or pass solvable_only=False")
