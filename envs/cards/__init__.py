"""Visual card games after gym-cards, the suite of RL4VLM (Zhai et al., 2024).

Four games, each drawn with Pillow as one RGB image per observation:

- `EZPointsEnv`  two cards; type a formula equal to 12 token by token ("1".."10", "+", "*", "=").
- `Points24Env`  four cards; the same with "-", "/", "(", ")" and target 24.
- `NumberLineEnv` move "current" to "target" on a number line with "+" / "-".
- `BlackjackEnv` Sutton & Barto blackjack against a dealer showing one card; "stand" / "hit".

Rules and rewards follow gym-cards: an illegal token (a number that is not on an unused card)
costs -1 and leaves the formula unchanged; "=" ends the game with +10 when the formula equals the
target and uses every card, else -1; J, Q and K count as 10 (Points24 can count them 11-13).
Where the suite has no rule (text that is not an action at all, adjacent numbers such as "1" "2"
read as 12 by Python's eval) this package chooses one and says so in the class docstring.

Every observation carries the exact game state as its `anchor` (never a pixel hash), so
identical states in a group share a key whatever the observation mode.

Layout: `deck` (cards and dealing), `formula` (exact evaluation and the solver), `render` (Pillow
drawing of cards and the number line), `base` (plumbing the four games share), `points`
(EZPoints and Points24), `numberline`, `blackjack`.
"""

from envs.cards.base import MIN_IMAGE_SIZE, OBS_MODES, RENDER_MODES
from envs.cards.blackjack import BlackjackEnv, basic_strategy, hand_total
from envs.cards.deck import RANKS, SUIT_NAMES, SUITS, Card, parse_card, random_card
from envs.cards.formula import evaluate, solutions
from envs.cards.numberline import NumberLineEnv
from envs.cards.points import EZPointsEnv, Points24Env
from envs.cards.render import TABLE_GREEN, draw_card, draw_number_line, draw_row

__all__ = [
    "MIN_IMAGE_SIZE", "OBS_MODES", "RANKS", "RENDER_MODES", "SUITS", "SUIT_NAMES", "TABLE_GREEN",
    "BlackjackEnv", "Card", "EZPointsEnv", "NumberLineEnv", "Points24Env",
    "basic_strategy", "draw_card", "draw_number_line", "draw_row", "evaluate", "hand_total", "parse_card",
    "random_card", "solutions",
]
