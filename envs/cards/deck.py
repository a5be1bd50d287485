"""Playing cards for the gym-cards games: ranks, suits, `Card`, and dealing from an infinite deck."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RANKS: tuple[str, ...] = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
SUITS: tuple[str, ...] = ("C", "D", "H", "S")
SUIT_NAMES = {"C": "clubs", "D": "diamonds", "H": "hearts", "S": "spades"}


@dataclass(frozen=True)
class Card:
    """A playing card: `rank` 1 (ace) to 13 (king) and `suit` one of C, D, H, S."""

    rank: int
    suit: str

    @property
    def label(self) -> str:
        """Short form used in anchors, e.g. "KH" or "10S"."""
        return RANKS[self.rank - 1] + self.suit

    @property
    def name(self) -> str:
        return f"{RANKS[self.rank - 1]} of {SUIT_NAMES[self.suit]}"

    def value(self, faces_as_10: bool = True) -> int:
        return min(self.rank, 10) if faces_as_10 else self.rank


def random_card(rng: np.random.Generator, rank: int | None = None) -> Card:
    """A card from an infinite deck (every rank and suit equally likely), or of a given rank."""
    r = int(rng.integers(1, 14)) if rank is None else rank
    return Card(r, SUITS[int(rng.integers(0, 4))])


def parse_card(spec: str, rng: np.random.Generator) -> Card:
    """Read "KH", "10S" or a bare rank such as "K" or "1" (the suit is then drawn from `rng`)."""
    text = str(spec).strip().upper()
    suit = text[-1] if len(text) > 1 and text[-1] in SUITS else None
    rank_text = text[:-1] if suit else text
    rank_text = "A" if rank_text == "1" else rank_text  # an ace is worth 1
    if rank_text not in RANKS:
        raise ValueError(f"bad card {spec!r}: write a rank {'/'.join(RANKS)} optionally followed by a suit "
                         f"C, D, H or S, e.g. 'KH' or '10'")
    card = random_card(rng, RANKS.index(rank_text) + 1)
    return Card(card.rank, suit) if suit else card
