"""`vision-qa`: questions about generated pictures, graded by exact match.

Each task is one picture drawn with Pillow and one question with an exact answer. Five kinds:

    bar_chart     the value of a named bar, or which category is highest
    line_chart    the value at a labelled month, or which month has the highest value
    count_shapes  how many <colour> <shape>s there are, among distractors of other colours/shapes
    geometry      area or perimeter of a rectangle or right triangle with labelled integer sides
    table         look up a cell, or sum a column, of a small rendered table

Charts are drawn on an integer pixel grid (every gridline step is a whole number of pixels) so
values can be read exactly off the axis, and shapes never touch, so every answer is recoverable
from the pixels alone. A task is a pure function of (seed, split, kinds, image size): the split is
part of the random stream's key, so the same seed gives different tasks in "train" and "eval".

Single-turn (default): the action is the answer; the episode ends after one step with reward 1.0
on an exact match after `normalize_answer`, else 0.0.

Multi-turn (`zoom=True`): each step is either `zoom(x0, y0, x1, y1)`, a pixel box in the
coordinates of the original full image, which shows that region enlarged (aspect ratio kept,
padded with white) as the next image; or `answer(value)`, which ends the episode. Any other text
is taken as a plain answer too: models often drop the wrapper, and grading it is more useful than
rejecting it. Text that starts with "zoom" but is malformed or out of range is an invalid step
(`valid_action=False`, the observation says what was wrong and the correct form) and the episode
goes on; after `max_steps` steps without an answer the episode is truncated.

`step` takes the bare action (what the rollout engine passes after parsing the agent's text);
text that still holds an `<action>...</action>` block is parsed first, so either form works.
`info` carries `won`, `valid_action`, `task` (the question), `answer` and `ground_truth` (the exact
answer string), `kind`, `split` and `steps`.

Layout: `render` (colours, fonts and Pillow drawing helpers), `tasks` (the five kinds' samplers,
each returning a `Sample` with its question and answer, and `generate_sample`), `env` (answer
normalisation, the zoom tool and `VisionQAEnv`).
"""

from envs.vision_qa.env import (MIN_ZOOM_SIDE, RENDER_MODES, ZOOM_RESAMPLE, VisionQAEnv, answers_match,
                                normalize_answer, parse_zoom, zoom_image)
from envs.vision_qa.render import BLACK, GRID, HEADER_FILL, PALETTE, SHAPES, TABLE_LINE, WHITE
from envs.vision_qa.tasks import (CATEGORIES, DAYS, KINDS, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, MONTHS, NAMES,
                                  NUMBER_HINT, SPLITS, TRIPLES, Sample, check_image_size, check_kinds,
                                  generate_sample, task_rng)

__all__ = [
    "BLACK", "CATEGORIES", "DAYS", "GRID", "HEADER_FILL", "KINDS", "MAX_IMAGE_SIDE", "MIN_IMAGE_SIDE",
    "MIN_ZOOM_SIDE", "MONTHS", "NAMES", "NUMBER_HINT", "PALETTE", "RENDER_MODES", "SHAPES", "SPLITS",
    "TABLE_LINE", "TRIPLES", "WHITE", "ZOOM_RESAMPLE",
    "Sample", "VisionQAEnv", "answers_match", "check_image_size", "check_kinds", "generate_sample",
    "normalize_answer", "parse_zoom", "task_rng", "zoom_image",
]
