"""Pillow drawing for the card games: fonts, suit symbols, cards, rows of cards, wrapped text
and the number line."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

from PIL import ImageDraw, ImageFont

from envs.cards.deck import RANKS, Card

TABLE_GREEN = (38, 100, 76)


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return _font_px(max(8, int(size)))  # whole pixels, so the cache below stays small


@lru_cache(maxsize=32)
def _font_px(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_suit(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, suit: str) -> None:
    """A suit symbol drawn from shapes (the default font has no suit glyphs)."""
    color = (200, 30, 30) if suit in "DH" else (20, 20, 20)
    r = size / 4
    if suit == "D":
        draw.polygon([(cx, cy - size / 2), (cx + size * 0.38, cy), (cx, cy + size / 2), (cx - size * 0.38, cy)],
                     fill=color)
    elif suit == "H":
        draw.ellipse([cx - 2 * r, cy - 2 * r, cx, cy], fill=color)
        draw.ellipse([cx, cy - 2 * r, cx + 2 * r, cy], fill=color)
        draw.polygon([(cx - 2 * r, cy - r * 0.9), (cx + 2 * r, cy - r * 0.9), (cx, cy + 2 * r)], fill=color)
    elif suit == "S":
        draw.ellipse([cx - 2 * r, cy - r, cx, cy + r], fill=color)
        draw.ellipse([cx, cy - r, cx + 2 * r, cy + r], fill=color)
        draw.polygon([(cx - 2 * r, cy + r * 0.1), (cx + 2 * r, cy + r * 0.1), (cx, cy - 2 * r)], fill=color)
        draw.polygon([(cx, cy), (cx - r, cy + 2 * r), (cx + r, cy + 2 * r)], fill=color)
    else:  # clubs: three leaves and a stem
        for dx, dy in ((0, -1.1), (-1.05, 0.35), (1.05, 0.35)):
            draw.ellipse([cx + dx * r - r, cy + dy * r - r, cx + dx * r + r, cy + dy * r + r], fill=color)
        draw.polygon([(cx, cy), (cx - r, cy + 2 * r), (cx + r, cy + 2 * r)], fill=color)


def draw_card(draw: ImageDraw.ImageDraw, x: float, y: float, width: float, card: Card | None) -> None:
    """One card at (x, y), `width` wide with a 5:7 shape; `None` draws it face down."""
    h = width * 1.4
    box = [x, y, x + width, y + h]
    radius = max(2, int(width / 10))
    if card is None:
        draw.rounded_rectangle(box, radius, fill=(40, 70, 160), outline=(250, 250, 250), width=2)
        inset = width / 8
        draw.rounded_rectangle([x + inset, y + inset, x + width - inset, y + h - inset], radius,
                               outline=(180, 200, 240), width=max(1, int(width / 30)))
        return
    draw.rounded_rectangle(box, radius, fill=(250, 250, 245), outline=(60, 60, 60), width=1)
    color = (200, 30, 30) if card.suit in "DH" else (20, 20, 20)
    rank = RANKS[card.rank - 1]
    corner = _font(width * 0.22)
    draw.text((x + width * 0.07, y + width * 0.05), rank, fill=color, font=corner)
    _draw_suit(draw, x + width * 0.17, y + width * 0.40, width * 0.16, card.suit)
    draw.text((x + width / 2, y + h * 0.45), rank, fill=color, font=_font(width * 0.42), anchor="mm")
    _draw_suit(draw, x + width / 2, y + h * 0.76, width * 0.26, card.suit)


def draw_row(draw: ImageDraw.ImageDraw, cards: Sequence[Card | None], top: float, size: int,
             max_width: float) -> float:
    """A centred row of cards starting at `top`; returns the y just below it."""
    margin, gap = size * 0.04, size * 0.03
    n = max(1, len(cards))
    width = min(max_width, (size - 2 * margin - (n - 1) * gap) / n)
    left = (size - n * width - (n - 1) * gap) / 2
    for i, card in enumerate(cards):
        draw_card(draw, left + i * (width + gap), top, width, card)
    return top + width * 1.4


def _wrapped(draw: ImageDraw.ImageDraw, words: Sequence[str], font: Any, width: float) -> list[str]:
    """Words joined by spaces into lines no wider than `width` pixels."""
    lines, line = [], ""
    for w in words:
        trial = f"{line} {w}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = w
        else:
            line = trial
    return lines + [line] if line else lines or [""]


def draw_number_line(draw: ImageDraw.ImageDraw, size: int, current: int, target: int, max_position: int) -> None:
    """Target and current in words, then the line 0..max_position with a red target marker and a
    blue dot for current."""
    font = _font(size * 0.11)
    draw.text((size * 0.1, size * 0.1), f"Target: {target}", fill=(0, 0, 0), font=font)
    draw.text((size * 0.1, size * 0.3), f"Current: {current}", fill=(0, 0, 0), font=font)
    left, right, y = size * 0.08, size * 0.92, size * 0.72
    draw.line([left, y, right, y], fill=(0, 0, 0), width=max(1, size // 150))
    step = (right - left) / max_position
    label_every = max(1, math.ceil(max_position / 10))  # keep tick labels from overlapping
    small = _font(size * 0.05)
    for k in range(max_position + 1):
        x = left + k * step
        draw.line([x, y - size * 0.02, x, y + size * 0.02], fill=(0, 0, 0), width=1)
        if k % label_every == 0:
            draw.text((x, y + size * 0.07), str(k), fill=(0, 0, 0), font=small, anchor="mm")
    tx, cx, r = left + target * step, left + current * step, size * 0.03
    draw.polygon([(tx - r, y - size * 0.12), (tx + r, y - size * 0.12), (tx, y - size * 0.05)],
                 fill=(210, 40, 40))
    draw.ellipse([cx - r, y - r, cx + r, y + r], fill=(40, 90, 220))

