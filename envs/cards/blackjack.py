"""Blackjack after Gymnasium's Blackjack-v1: hand totals, basic strategy and `BlackjackEnv`."""

from __future__ import annotations

import math
from typing import Sequence

from PIL import ImageDraw

from envs.cards.base import _CardGameEnv
from envs.cards.deck import Card, parse_card, random_card
from envs.cards.render import _font, draw_row


def hand_total(values: Sequence[int]) -> tuple[int, bool]:
    """(best total, soft): an ace counts 11 when that does not bust the hand (a "usable ace")."""
    total = sum(values)
    soft = 1 in values and total + 10 <= 21
    return (total + 10 if soft else total), soft


def basic_strategy(player: Sequence[int], dealer_up: int) -> str:
    """Hit/stand basic strategy for an infinite deck, dealer standing on 17 (no doubles or splits)."""
    total, soft = hand_total(player)
    up = 11 if dealer_up == 1 else dealer_up
    if soft:
        return "stand" if total >= 19 or (total == 18 and up <= 8) else "hit"
    if total >= 17:
        return "stand"
    if total >= 13:
        return "stand" if up <= 6 else "hit"
    if total == 12:
        return "stand" if 4 <= up <= 6 else "hit"
    return "hit"


class BlackjackEnv(_CardGameEnv):
    """Blackjack as in Gymnasium's Blackjack-v1 (Sutton & Barto), which gym-cards draws as images.

    Infinite deck. The dealer shows one card and hides one; the player sees all of theirs. "hit"
    draws a card (busting ends the game with -1); "stand" lets the dealer draw to 17 or more and
    scores +1 / 0 / -1 for a win / draw / loss (+1.5 for a natural win with `natural=True`; with
    `sab=True` a natural beats any non-natural dealer hand). Text that is not "stand" or "hit"
    (case-insensitive) costs `invalid_penalty` and changes nothing (the suite, with a discrete
    action space, has no such case); `max_steps` truncates an episode stuck on invalid text.
    The anchor holds what the player can see: their cards and the dealer's up card.
    """

    ACTIONS = ("stand", "hit")
    instructions = (
        "Blackjack: you see the dealer's cards (one face down) and yours. Get closer to 21 than the "
        "dealer without going over. Number cards count their number, J, Q and K count 10, an ace 1 or 11. "
        "Each turn choose 'hit' (take a card) or 'stand' (stop; the dealer then draws to 17 or more). "
        "Win +1, draw 0, lose -1; going over 21 loses at once."
    )

    def __init__(self, natural: bool = False, sab: bool = False, max_steps: int = 30, obs_mode: str = "image",
                 image_size: int = 300, render_mode: str | None = None, invalid_penalty: float = -1.0):
        super().__init__(obs_mode, image_size, max_steps, render_mode)
        self.natural, self.sab = bool(natural), bool(sab)
        self.invalid_penalty = float(invalid_penalty)
        self.player: list[Card] = []
        self.dealer: list[Card] = []
        self.outcome = ""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Deal two cards each, or `options={"player": ["10H", "7"], "dealer": ["9S", "K"]}`."""
        super().reset(seed=seed)
        rng = self.np_random
        options = options or {}
        hands = []
        for who in ("dealer", "player"):
            given = options.get(who)
            hand = [parse_card(c, rng) for c in given] if given is not None else [random_card(rng), random_card(rng)]
            if len(hand) != 2:
                raise ValueError(f"options[{who!r}] must list exactly 2 cards; got {len(hand)}")
            hands.append(hand)
        self.dealer, self.player = hands
        self._steps, self._started, self._over, self.outcome = 0, True, False, ""
        return self._obs(), self._info(valid_action=True)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        name = self._begin_step(action.lower() if isinstance(action, str) else action)
        reward, terminated = 0.0, False
        if name is None:
            reward = self.invalid_penalty
        elif name == "hit":
            self.player.append(random_card(self.np_random))
            if self.player_total > 21:
                reward, terminated, self.outcome = -1.0, True, "bust"
        else:
            while hand_total(self._values(self.dealer))[0] < 17:
                self.dealer.append(random_card(self.np_random))
            reward, terminated = self._settle(), True
        truncated = not terminated and self._steps >= self.max_steps
        self._over = terminated or truncated
        return self._obs(), reward, terminated, truncated, self._info(name is not None, won=reward > 0)

    def _settle(self) -> float:
        mine, theirs = self._score(self.player), self._score(self.dealer)
        reward = float((mine > theirs) - (mine < theirs))
        if self.sab and self._natural(self.player) and not self._natural(self.dealer):
            reward = 1.0
        elif not self.sab and self.natural and self._natural(self.player) and reward == 1.0:
            reward = 1.5
        self.outcome = {1.0: "win", 1.5: "win", 0.0: "draw", -1.0: "loss"}[reward]
        return reward

    @staticmethod
    def _values(hand: Sequence[Card]) -> list[int]:
        return [c.value() for c in hand]

    def _score(self, hand: Sequence[Card]) -> int:
        total = hand_total(self._values(hand))[0]
        return 0 if total > 21 else total

    def _natural(self, hand: Sequence[Card]) -> bool:
        return sorted(self._values(hand)) == [1, 10]

    @property
    def player_total(self) -> int:
        return hand_total(self._values(self.player))[0]

    def expert_action(self) -> str:
        """Basic strategy (see `basic_strategy`)."""
        self._require_started()
        return basic_strategy(self._values(self.player), self.dealer[0].value())

    @property
    def task(self) -> str:
        return "Win the hand of blackjack: get closer to 21 than the dealer without going over."

    def _anchor(self) -> str:
        dealer = ",".join(c.label for c in self.dealer) if self._over else self.dealer[0].label + ",?"
        end = f"|outcome={self.outcome}" if self.outcome else ""
        return f"player={','.join(c.label for c in self.player)}|dealer={dealer}{end}"

    def _state_text(self) -> str:
        total, soft = hand_total(self._values(self.player))
        kind = "soft" if soft else "hard"
        text = (f"Your cards: {', '.join(c.name for c in self.player)} (total {total}, {kind}). "
                f"Dealer shows: {self.dealer[0].name}; the other dealer card is face down.")
        if self.outcome:
            dealer_total = hand_total(self._values(self.dealer))[0]
            text = (f"Your cards: {', '.join(c.name for c in self.player)} (total {total}). Dealer's cards: "
                    f"{', '.join(c.name for c in self.dealer)} (total {dealer_total}). Result: {self.outcome}.")
        return text

    def _image_text(self) -> str:
        return "The image shows the dealer's cards at the top (one face down) and your cards below."

    def _draw(self, draw: ImageDraw.ImageDraw, size: int) -> None:
        font, white = _font(size * 0.06), (255, 255, 255)
        dealer: list[Card | None] = list(self.dealer) if self._over else [self.dealer[0], None]
        draw.text((size * 0.04, size * 0.02), "Dealer", fill=white, font=font)
        draw_row(draw, dealer, size * 0.09, size, max_width=size * 0.17)
        draw.text((size * 0.04, size * 0.40), "Player", fill=white, font=font)
        # Up to 5 cards per row (more when a long hand needs it), in two rows.
        per_row = max(5, math.ceil(len(self.player) / 2))
        for r, top in enumerate((size * 0.47, size * 0.73)):
            row = self.player[r * per_row:(r + 1) * per_row]
            if row:
                draw_row(draw, row, top, size, max_width=min(size * 0.17, size * 0.92 / per_row))
