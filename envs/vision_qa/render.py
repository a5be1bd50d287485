"""Drawing for vision-qa: the named colours, fonts, text placement, the canvas, chart axes and shapes."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

# Colours with names (count_shapes asks for them by name). They are far apart and none is a grey,
# so a shape's pixels never coincide with text, gridlines or the background.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 90, 220),
    "orange": (245, 140, 20),
    "purple": (140, 60, 180),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
GRID = (215, 215, 215)  # chart gridlines
TABLE_LINE = (60, 60, 60)  # table rules; text is black, so rules stay separable from it
HEADER_FILL = (232, 232, 232)


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at `size` pixels (no font files needed)."""
    return ImageFont.load_default(size=size)


def _font_size(width: int, height: int) -> int:
    return max(9, round(min(width, height) / 17))


def _fitting_font(draw: ImageDraw.ImageDraw, texts: Sequence[str], max_width: float,
                  size: int) -> ImageFont.FreeTypeFont:
    """The largest font not above `size` in which every text fits `max_width` pixels."""
    while size > 7 and max(draw.textlength(t, font=_font(size)) for t in texts) > max_width:
        size -= 1
    return _font(size)


def _text_centered(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
                   font: ImageFont.FreeTypeFont, fill: tuple[int, int, int] = BLACK) -> None:
    draw.text(xy, text, fill=fill, font=font, anchor="mm")


def _canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (width, height), WHITE)
    return img, ImageDraw.Draw(img)


def _axes(draw: ImageDraw.ImageDraw, width: int, height: int, steps: int, step: int,
          font: ImageFont.FreeTypeFont) -> tuple[int, int, int, int, int]:
    """Draw gridlines, y tick labels and axes; return the plot box (x0, top, x1, baseline) and
    the whole number of pixels per gridline step."""
    pad = font.size
    x0 = pad + int(draw.textlength(str(steps * step), font=font)) + 6
    x1 = width - pad
    baseline = height - 2 * pad - 4
    unit = (baseline - 2 * pad) // steps  # integer pixels per step: values read exactly
    top = baseline - unit * steps
    label_every = 1 if unit >= font.size + 2 else 2
    for k in range(steps + 1):
        y = baseline - k * unit
        draw.line([(x0, y), (x1, y)], fill=GRID)
        if k % label_every == 0:
            draw.text((x0 - 4, y), str(k * step), fill=BLACK, font=font, anchor="rm")
    draw.line([(x0, top), (x0, baseline)], fill=BLACK)
    draw.line([(x0, baseline), (x1, baseline)], fill=BLACK)
    return x0, top, x1, baseline, unit


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int,
                fill: tuple[int, int, int]) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
