"""The five kinds of vision-qa task: each sampler draws a picture and returns it with a question and
its exact answer as a `Sample`; `generate_sample` picks the kind and seeds the sampler."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from envs.vision_qa.render import (BLACK, HEADER_FILL, PALETTE, SHAPES, TABLE_LINE, _axes, _canvas, _draw_shape,
                                   _fitting_font, _font, _font_size, _text_centered)

KINDS: tuple[str, ...] = ("bar_chart", "line_chart", "count_shapes", "geometry", "table")
SPLITS: tuple[str, ...] = ("train", "eval")
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 128, 2048  # below 128 px the labels stop being legible

CATEGORIES = ("fig", "kiwi", "lime", "plum", "pear", "date", "yam", "corn", "bean", "leek")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
NAMES = ("Ana", "Ben", "Cai", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri")
# Right triangles with integer sides whose legs are not too lopsided to draw (scaled by k below).
TRIPLES = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (20, 21, 29), (9, 12, 15), (6, 8, 10))

NUMBER_HINT = "Answer with the number only."


@dataclass(frozen=True)
class Sample:
    """One task: the picture, its question and exact answer.

    `hint` says how to write the answer; `data` records what was drawn (values, boxes, colours),
    for analysis and for tests that check the picture against the answer.
    """

    kind: str
    image: np.ndarray
    question: str
    answer: str
    hint: str
    data: dict[str, Any] = field(default_factory=dict)


def _nice_step(rng: np.random.Generator) -> int:
    return int(rng.choice([1, 2, 5, 10, 20, 50]))


def _unique_max(values: Sequence[int]) -> bool:
    return sorted(values)[-1] != sorted(values)[-2]


# ---------------------------------------------------------------------------------------------
# The five kinds: each draws on a (width, height) canvas and returns a Sample


def _bar_chart(rng: np.random.Generator, width: int, height: int) -> Sample:
    n = int(rng.integers(3, 7))
    names = [str(c) for c in rng.choice(CATEGORIES, n, replace=False)]
    step, steps = _nice_step(rng), int(rng.integers(5, 11))
    while True:  # a "which is highest" question needs one clear winner
        ks = [int(k) for k in rng.integers(1, steps + 1, n)]
        if _unique_max(ks):
            break
    color_name = str(rng.choice(list(PALETTE)))
    img, draw = _canvas(width, height)
    font = _font(_font_size(width, height))
    x0, top, x1, baseline, unit = _axes(draw, width, height, steps, step, font)
    slot = (x1 - x0) / n
    label_font = _fitting_font(draw, names, slot - 2, font.size)
    bars = []
    for i, k in enumerate(ks):
        left = round(x0 + i * slot + slot * 0.2)
        right = round(x0 + (i + 1) * slot - slot * 0.2) - 1
        # the bar stops one row above the axis, so its height in pixels is exactly k * unit
        draw.rectangle([left, baseline - k * unit, right, baseline - 1], fill=PALETTE[color_name])
        _text_centered(draw, ((left + right) / 2, baseline + font.size * 0.9), names[i], label_font)
        bars.append((left, right))
    values = [k * step for k in ks]
    if rng.random() < 0.5:
        i = int(rng.integers(n))
        question, answer, hint = f"What is the value of the bar labelled '{names[i]}'?", str(values[i]), NUMBER_HINT
    else:
        question = "Which category has the highest value?"
        answer, hint = names[int(np.argmax(values))], "Answer with the category name as written in the chart."
    data = {"categories": names, "values": values, "step": step, "unit": unit, "color": color_name,
            "plot_box": (x0, top, x1, baseline), "bars": bars}
    return Sample("bar_chart", np.asarray(img), question, answer, hint, data)


def _line_chart(rng: np.random.Generator, width: int, height: int) -> Sample:
    n = int(rng.integers(4, 8))
    first = int(rng.integers(0, len(MONTHS) - n + 1))
    months = list(MONTHS[first:first + n])
    step, steps = _nice_step(rng), int(rng.integers(5, 11))
    while True:
        ks = [int(k) for k in rng.integers(0, steps + 1, n)]
        if _unique_max(ks):
            break
    color_name = str(rng.choice(list(PALETTE)))
    marker = PALETTE[color_name]
    line = tuple((c + 255) // 2 for c in marker)  # a paler tint: markers stay separable from the line
    img, draw = _canvas(width, height)
    font = _font(_font_size(width, height))
    x0, top, x1, baseline, unit = _axes(draw, width, height, steps, step, font)
    slot = (x1 - x0) / n
    label_font = _fitting_font(draw, months, slot - 2, font.size)
    points = [(round(x0 + (i + 0.5) * slot), baseline - k * unit) for i, k in enumerate(ks)]
    draw.line(points, fill=line, width=2)
    r = max(2, font.size // 4)
    for (x, y), month in zip(points, months):
        draw.rectangle([x - r, y - r, x + r, y + r], fill=marker)
        _text_centered(draw, (x, baseline + font.size * 0.9), month, label_font)
    values = [k * step for k in ks]
    if rng.random() < 0.5:
        i = int(rng.integers(n))
        question, answer, hint = f"What is the value at {months[i]}?", str(values[i]), NUMBER_HINT
    else:
        question = "In which month is the value highest?"
        answer, hint = months[int(np.argmax(values))], "Answer with the month label as written on the x-axis."
    data = {"months": months, "values": values, "step": step, "unit": unit, "color": color_name,
            "plot_box": (x0, top, x1, baseline), "points": points}
    return Sample("line_chart", np.asarray(img), question, answer, hint, data)


def _count_shapes(rng: np.random.Generator, width: int, height: int) -> Sample:
    cols, rows = 5, 5
    cw, ch = width // cols, height // rows
    color, shape = str(rng.choice(list(PALETTE))), str(rng.choice(SHAPES))
    count = int(rng.integers(1, 6))
    others = [(c, s) for c in PALETTE for s in SHAPES if (c, s) != (color, shape)]
    # At least one distractor shares the colour and one the shape, so neither alone answers it.
    same_color = [o for o in others if o[0] == color]
    same_shape = [o for o in others if o[1] == shape]
    distractors = [same_color[int(rng.integers(len(same_color)))], same_shape[int(rng.integers(len(same_shape)))]]
    extra = int(rng.integers(2, 9))
    distractors += [others[int(i)] for i in rng.integers(len(others), size=extra)]
    items = [(color, shape)] * count + distractors
    cells = rng.permutation(cols * rows)[:len(items)]
    img, draw = _canvas(width, height)
    placed = []
    # Each shape stays inside its own grid cell with a gap to the cell edges: shapes never touch.
    gap = max(2, min(cw, ch) // 10)
    for (c, s), cell in zip(items, cells):
        r_max = (min(cw, ch) - 2 * gap) // 2
        r = int(rng.integers(max(4, r_max * 6 // 10), r_max + 1))
        left, top = (int(cell) % cols) * cw, (int(cell) // cols) * ch
        cx = left + gap + r + int(rng.integers(0, cw - 2 * gap - 2 * r + 1))
        cy = top + gap + r + int(rng.integers(0, ch - 2 * gap - 2 * r + 1))
        _draw_shape(draw, s, cx, cy, r, PALETTE[c])
        placed.append((c, s, cx, cy, r))
    question = f"How many {color} {shape}s are in the image?"
    data = {"color": color, "shape": shape, "shapes": placed}
    return Sample("count_shapes", np.asarray(img), question, str(count), NUMBER_HINT, data)


def _geometry(rng: np.random.Generator, width: int, height: int) -> Sample:
    color_name = str(rng.choice(list(PALETTE)))
    outline = PALETTE[color_name]
    img, draw = _canvas(width, height)
    font = _font(_font_size(width, height))
    margin = 3 * font.size  # room for the side labels outside the figure
    avail_w, avail_h = width - 2 * margin, height - 2 * margin
    line_w = max(2, font.size // 6)
    if rng.random() < 0.5:
        while True:
            w, h = (int(v) for v in rng.integers(2, 21, 2))
            if max(w, h) <= 4 * min(w, h):  # keep it recognisably a rectangle, not a line
                break
        scale = min(avail_w / w, avail_h / h)
        pw, ph = round(w * scale), round(h * scale)
        x0, y0 = (width - pw) // 2, (height - ph) // 2
        draw.rectangle([x0, y0, x0 + pw, y0 + ph], outline=outline, width=line_w)
        _text_centered(draw, (x0 + pw / 2, y0 + ph + font.size), f"{w} cm", font)
        draw.text((x0 + pw + font.size // 2, y0 + ph / 2), f"{h} cm", fill=BLACK, font=font, anchor="lm")
        shape, sides = "rectangle", {"width": w, "height": h}
        area, perimeter = w * h, 2 * (w + h)
    else:
        a, b, c = TRIPLES[int(rng.integers(len(TRIPLES)))]
        k = int(rng.integers(1, 4))
        a, b, c = a * k, b * k, c * k
        if rng.random() < 0.5:
            a, b = b, a  # a is the vertical leg, b the horizontal one
        scale = min(avail_w / b, avail_h / a)
        pw, ph = round(b * scale), round(a * scale)
        x0, y0 = (width - pw) // 2, (height - ph) // 2
        corner = (x0, y0 + ph)  # the right angle, bottom left
        draw.polygon([(x0, y0), corner, (x0 + pw, y0 + ph)], outline=outline, width=line_w)
        m = max(6, font.size // 2)
        draw.line([(x0, y0 + ph - m), (x0 + m, y0 + ph - m), (x0 + m, y0 + ph)], fill=outline, width=1)
        draw.text((x0 - font.size // 2, y0 + ph / 2), f"{a} cm", fill=BLACK, font=font, anchor="rm")
        _text_centered(draw, (x0 + pw / 2, y0 + ph + font.size), f"{b} cm", font)
        draw.text((x0 + pw / 2 + font.size // 2, y0 + ph / 2 - font.size // 2), f"{c} cm",
                  fill=BLACK, font=font, anchor="lb")
        shape, sides = "right triangle", {"vertical": a, "horizontal": b, "hypotenuse": c}
        area, perimeter = a * b // 2, a + b + c  # one leg of every triple is even: the area is whole
    if rng.random() < 0.5:
        question, answer = f"What is the area of the {shape} in square centimetres?", str(area)
    else:
        question, answer = f"What is the perimeter of the {shape} in centimetres?", str(perimeter)
    data = {"shape": shape, "sides": sides, "color": color_name, "area": area, "perimeter": perimeter}
    return Sample("geometry", np.asarray(img), question, answer, NUMBER_HINT, data)


def _table(rng: np.random.Generator, width: int, height: int) -> Sample:
    n_rows, n_cols = int(rng.integers(3, 6)), int(rng.integers(2, 4))
    names = [str(s) for s in rng.choice(NAMES, n_rows, replace=False)]
    first = int(rng.integers(0, len(DAYS) - n_cols + 1))
    columns = list(DAYS[first:first + n_cols])
    values = [[int(v) for v in rng.integers(1, 1000, n_cols)] for _ in range(n_rows)]
    img, draw = _canvas(width, height)
    margin = max(4, width // 20)
    col_w = (width - 2 * margin) // (n_cols + 1)
    row_h = min((height - 2 * margin) // (n_rows + 1), 2 * _font_size(width, height) + 6)
    x0 = (width - col_w * (n_cols + 1)) // 2
    y0 = (height - row_h * (n_rows + 1)) // 2
    x1, y1 = x0 + col_w * (n_cols + 1), y0 + row_h * (n_rows + 1)
    cells = ["Name", *columns, *names, *(str(v) for row in values for v in row)]
    font = _fitting_font(draw, cells, col_w - 6, min(_font_size(width, height), row_h - 4))
    draw.rectangle([x0, y0, x1, y0 + row_h], fill=HEADER_FILL)
    for r in range(n_rows + 2):
        draw.line([(x0, y0 + r * row_h), (x1, y0 + r * row_h)], fill=TABLE_LINE)
    for c in range(n_cols + 2):
        draw.line([(x0 + c * col_w, y0), (x0 + c * col_w, y1)], fill=TABLE_LINE)
    grid = [["Name", *columns]] + [[name, *map(str, row)] for name, row in zip(names, values)]
    for r, row in enumerate(grid):
        for c, text in enumerate(row):
            _text_centered(draw, (x0 + (c + 0.5) * col_w, y0 + (r + 0.5) * row_h), text, font)
    col = int(rng.integers(n_cols))
    if rng.random() < 0.5:
        r = int(rng.integers(n_rows))
        question, answer = f"In the table, what is the value for {names[r]} under {columns[col]}?", str(values[r][col])
    else:
        question = f"In the table, what is the sum of the {columns[col]} column?"
        answer = str(sum(row[col] for row in values))
    data = {"names": names, "columns": columns, "values": values, "box": (x0, y0, x1, y1)}
    return Sample("table", np.asarray(img), question, answer, NUMBER_HINT, data)


_GENERATORS = {"bar_chart": _bar_chart, "line_chart": _line_chart, "count_shapes": _count_shapes,
               "geometry": _geometry, "table": _table}


# ---------------------------------------------------------------------------------------------
# Tasks


def check_kinds(kinds: Sequence[str] | str | None) -> tuple[str, ...]:
    """The requested kinds in canonical order (so the order given does not change the tasks)."""
    if kinds is None:
        return KINDS
    requested = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in requested if k not in KINDS]
    if unknown or not requested:
        raise ValueError(f"unknown vision-qa kind(s) {unknown or requested!r}; choose from {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in requested)


def check_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """`image_size` as (height, width): an int gives a square."""
    sides = [image_size, image_size] if isinstance(image_size, (int, np.integer)) else list(image_size)
    if len(sides) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sides) \
            or not all(MIN_IMAGE_SIDE <= s <= MAX_IMAGE_SIDE for s in sides):
        raise ValueError(f"image_size must be an int or (height, width), each side between {MIN_IMAGE_SIDE} "
                         f"and {MAX_IMAGE_SIDE} pixels; got {image_size!r}")
    return int(sides[0]), int(sides[1])


def task_rng(seed: int, split: str) -> np.random.Generator:
    """The random stream of one task: keyed by split and seed, so splits never share a stream."""
    digest = hashlib.sha256(f"vision-qa|{split}|{int(seed)}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def generate_sample(seed: int, split: str = "train", kinds: Sequence[str] | str | None = None,
                    image_size: int | Sequence[int] = 224) -> Sample:
    """The task for `seed` in `split`: a pure function of its arguments."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use 'train' or 'eval'")
    chosen = check_kinds(kinds)
    height, width = check_image_size(image_size)
    rng = task_rng(seed, split)
    kind = chosen[int(rng.integers(len(chosen)))]
    return _GENERATORS[kind](rng, width, height)
