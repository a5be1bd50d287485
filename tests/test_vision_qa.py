"""Tests of the vision QA environment (envs/vision_qa/).

Where it is feasible the answers are recomputed from the pixels (bar heights, marker positions,
connected shapes, figure proportions, table rules) rather than taken from the generator.
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

import envs
from envs.base import ActionFormat, image_anchor
from envs.vision_qa import (GRID, KINDS, PALETTE, TABLE_LINE, ZOOM_RESAMPLE, VisionQAEnv, answers_match,
                            generate_sample, normalize_answer)

SEEDS = range(12)  # per kind: enough to meet both question types of every kind


def samples(kind: str):
    return [generate_sample(seed, kinds=[kind]) for seed in SEEDS]


def mask_of(image: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    return np.all(image == np.asarray(color, dtype=np.uint8), axis=-1)


def components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, each as an (n, 2) array of (row, col)."""
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, cells = deque([start]), []
        while queue:
            r, c = queue.popleft()
            cells.append((r, c))
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
        found.append(np.asarray(cells))
    return found


def gridline_rows(image: np.ndarray, column: int) -> np.ndarray:
    return np.nonzero(mask_of(image, GRID)[:, column])[0]


# ---------------------------------------------------------------------------------------------
# The gymnasium contract and determinism


@pytest.mark.parametrize("kwargs", [{}, {"zoom": True}, {"image_size": (160, 200), "kinds": ["table"]}])
def test_check_env(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium warns that a directly built env has no spec
        check_env(VisionQAEnv(**kwargs))


def test_same_seed_same_task_seeds_vary_and_splits_differ():
    env, ev = VisionQAEnv(), VisionQAEnv(split="eval")
    first, info = env.reset(seed=11)
    again, info2 = env.reset(seed=11)
    assert np.array_equal(first["images"][0], again["images"][0])
    assert first["text"] == again["text"] and info == info2
    anchors = {env.reset(seed=s)[0]["anchor"] for s in range(20)}
    assert len(anchors) == 20
    kinds = {env.reset(seed=s)[1]["kind"] for s in range(30)}
    assert kinds == set(KINDS)
    for seed in range(5):
        assert env.reset(seed=seed)[0]["anchor"] != ev.reset(seed=seed)[0]["anchor"]
    # the kinds' order does not change the tasks
    a = generate_sample(3, kinds=["table", "bar_chart"])
    b = generate_sample(3, kinds=["bar_chart", "table"])
    assert np.array_equal(a.image, b.image) and a.question == b.question


def test_unseeded_resets_follow_the_first_seed():
    env = VisionQAEnv()
    env.reset(seed=4)
    one = [env.reset()[0]["anchor"] for _ in range(3)]
    env.reset(seed=4)
    assert [env.reset()[0]["anchor"] for _ in range(3)] == one
    assert len(set(one)) == 3


def test_observation_and_info():
    env = VisionQAEnv(image_size=(180, 240))
    obs, info = env.reset(seed=2)
    (img,) = obs["images"]
    assert img.shape == (180, 240, 3) and img.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert info["task"] in obs["text"] and "<action>" in obs["text"]
    assert obs["anchor"] == f"{image_anchor(img)}|{info['task']}"
    assert info["answer"] == info["ground_truth"] == env.sample.answer
    assert info["kind"] in KINDS and info["won"] is False and info["valid_action"] is True
    assert "zoom" not in obs["text"]


# ---------------------------------------------------------------------------------------------
# Each kind's answer, recomputed from the pixels


def test_bar_chart_answers_match_the_bar_heights():
    asked = set()
    for s in samples("bar_chart"):
        img, d = s.image, s.data
        x0, _, _, baseline = d["plot_box"]
        bar = mask_of(img, PALETTE[d["color"]])
        # bars, left to right, from the row just above the axis
        row = bar[baseline - 1]
        starts = np.nonzero(row & ~np.r_[False, row[:-1]])[0]
        assert len(starts) == len(d["categories"])
        heights = np.asarray([bar[:baseline, x].sum() for x in starts + 1])
        unit = np.diff(gridline_rows(img, x0 + 2))
        assert len(set(unit)) == 1  # evenly spaced gridlines, a whole number of pixels apart
        unit = int(unit[0])
        assert all(h % unit == 0 for h in heights)
        read = [int(h) // unit * d["step"] for h in heights]
        if "highest" in s.question:
            asked.add("highest")
            assert s.answer == d["categories"][int(np.argmax(heights))]
            assert (heights == heights.max()).sum() == 1
        else:
            asked.add("value")
            name = s.question.split("'")[1]
            assert int(s.answer) == read[d["categories"].index(name)]
    assert asked == {"highest", "value"}


def test_line_chart_answers_match_the_marker_positions():
    asked = set()
    for s in samples("line_chart"):
        img, d = s.image, s.data
        x0 = d["plot_box"][0]
        markers = sorted(components(mask_of(img, PALETTE[d["color"]])), key=lambda c: c[:, 1].mean())
        assert len(markers) == len(d["months"])
        rows = gridline_rows(img, x0 + 2)
        unit = int(np.diff(rows)[0])
        baseline = rows.max() + unit  # the axis sits one step below the lowest gridline
        centres = [m[:, 0].mean() for m in markers]
        read = [round((baseline - y) / unit) * d["step"] for y in centres]
        assert all(abs((baseline - y) / unit - round((baseline - y) / unit)) < 1e-9 for y in centres)
        if "highest" in s.question:
            asked.add("highest")
            assert s.answer == d["months"][int(np.argmin(centres))]
        else:
            asked.add("value")
            month = s.question.rstrip("?").split()[-1]
            assert int(s.answer) == read[d["months"].index(month)]
    assert asked == {"highest", "value"}


def classify(cells: np.ndarray) -> str:
    """A shape's name from how much of its bounding box it fills."""
    h = np.ptp(cells[:, 0]) + 1
    w = np.ptp(cells[:, 1]) + 1
    fill = len(cells) / (h * w)
    return "square" if fill > 0.95 else "circle" if fill > 0.68 else "triangle"


def test_count_shapes_answer_is_the_number_of_matching_blobs():
    for s in samples("count_shapes"):
        color, shape = s.data["color"], s.data["shape"]
        assert s.question == f"How many {color} {shape}s are in the image?"
        blobs = components(mask_of(s.image, PALETTE[color]))
        assert sum(classify(b) == shape for b in blobs) == int(s.answer)
        # distractors of the same colour (other shapes) and of the same shape (other colours)
        assert any(classify(b) != shape for b in blobs)
        others = [b for c in PALETTE if c != color for b in components(mask_of(s.image, PALETTE[c]))]
        assert any(classify(b) == shape for b in others)
        # nothing overlaps: every drawn shape is its own blob
        assert len(blobs) + len(others) == len(s.data["shapes"])


def test_geometry_answer_matches_the_drawn_proportions():
    seen = set()
    for s in samples("geometry"):
        d = s.data
        rows, cols = np.nonzero(mask_of(s.image, PALETTE[d["color"]]))
        drawn_w, drawn_h = np.ptp(cols), np.ptp(rows)
        sides = d["sides"]
        if d["shape"] == "rectangle":
            w, h = sides["width"], sides["height"]
            area, perimeter = w * h, 2 * (w + h)
        else:
            w, h, c = sides["horizontal"], sides["vertical"], sides["hypotenuse"]
            assert w * w + h * h == c * c
            area, perimeter = w * h // 2, w + h + c
            assert (w * h) % 2 == 0
        assert abs(drawn_w / drawn_h - w / h) < 0.05 * (w / h)
        expected = area if "area" in s.question else perimeter
        assert int(s.answer) == expected
        seen.add((d["shape"], "area" in s.question))
    assert len(seen) >= 3


def test_table_rules_and_answers():
    asked = set()
    for s in samples("table"):
        d = s.data
        x0, y0, x1, y1 = d["box"]
        rule = mask_of(s.image, TABLE_LINE)
        full_rows = np.nonzero(rule[:, x0:x1 + 1].sum(axis=1) > 0.9 * (x1 - x0))[0]
        full_cols = np.nonzero(rule[y0:y1 + 1, :].sum(axis=0) > 0.9 * (y1 - y0))[0]
        assert len(full_rows) == len(d["names"]) + 2  # top, below the header, below each row
        assert len(full_cols) == len(d["columns"]) + 2
        column = next(c for c in d["columns"] if f" {c} " in s.question or f" {c}?" in s.question)
        values = [row[d["columns"].index(column)] for row in d["values"]]
        if "sum" in s.question:
            asked.add("sum")
            assert int(s.answer) == sum(values)
        else:
            asked.add("cell")
            name = next(n for n in d["names"] if f" {n} " in s.question)
            assert int(s.answer) == values[d["names"].index(name)]
    assert asked == {"sum", "cell"}


# ---------------------------------------------------------------------------------------------
# Grading


@pytest.mark.parametrize("given, truth", [
    ("7", "7"), (" 7 ", "7"), ("7.0", "7"), ("7.", "7"), ("7.00.", "7"), ("1,250", "1250"),
    ("2,345.0", "2345"), ("2.50", "2.5"), ("Kiwi", "kiwi"), ("KIWI.", "kiwi"), ("'kiwi'", "kiwi"),
    ("  Aug \n", "Aug"), ("+7", "7"),
])
def test_answers_that_match(given, truth):
    assert answers_match(given, truth)


@pytest.mark.parametrize("given, truth", [
    ("8", "7"), ("1,5", "15"), ("70", "7"), ("kiwis", "kiwi"), ("7 cm", "7"), ("", "7"), ("Jul", "Aug"),
])
def test_answers_that_do_not_match(given, truth):
    assert not answers_match(given, truth)


def test_normalize_answer_forms():
    assert normalize_answer("1,000,000.50") == "1000000.5"
    assert normalize_answer("100") == "100"  # not "1E+2"
    assert normalize_answer("Sep.") == "sep"


def test_single_turn_rewards_and_ends_after_one_step():
    env = VisionQAEnv()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        truth = info["ground_truth"]
        obs, reward, terminated, truncated, info = env.step(f"  {truth.upper()}. ")
        assert (reward, terminated, truncated, info["won"]) == (1.0, True, False, True)
        assert "correct" in obs["text"]
        with pytest.raises(RuntimeError, match="reset"):
            env.step(truth)
        env.reset(seed=seed)
        _, reward, terminated, _, info = env.step(truth + "0")  # a different answer
        assert (reward, terminated, info["won"], info["valid_action"]) == (0.0, True, False, True)


def test_step_takes_the_bare_action_or_the_formatted_text():
    env = VisionQAEnv()
    _, info = env.reset(seed=1)
    _, reward, *_ = env.step(ActionFormat().format(info["answer"], think="reading the image"))
    assert reward == 1.0
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step("")
    assert reward == 0.0 and terminated and info["valid_action"] is False


# ---------------------------------------------------------------------------------------------
# Zoom mode


def test_zoom_shows_the_enlarged_crop():
    env = VisionQAEnv(zoom=True, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    full = obs["images"][0]
    zoomed, reward, terminated, truncated, info = env.step("zoom(20, 30, 132, 142)")
    assert info["valid_action"] and not (terminated or truncated) and reward == 0.0
    expected = np.asarray(Image.fromarray(full).crop((20, 30, 132, 142)).resize((224, 224), ZOOM_RESAMPLE))
    assert np.array_equal(zoomed["images"][0], expected)
    assert np.array_equal(env.render(), expected)
    assert zoomed["anchor"] != obs["anchor"] and zoomed["anchor"].startswith(image_anchor(expected))
    # coordinates always refer to the original picture, not to the current view
    again, *_ = env.step("ZOOM( 20,30 , 132,142 )")
    assert np.array_equal(again["images"][0], expected)


def test_zoom_on_a_wide_box_keeps_the_aspect_ratio():
    env = VisionQAEnv(zoom=True, max_steps=2)
    obs, _ = env.reset(seed=5)
    zoomed = env.step("zoom(0, 50, 224, 162)")[0]["images"][0]  # 224 x 112: twice as wide as high
    band = np.all(zoomed == 255, axis=(1, 2))  # all-white rows: the padding above and below
    assert band[:56].all() and band[-56:].all()
    expected = Image.fromarray(obs["images"][0]).crop((0, 50, 224, 162)).resize((224, 112), ZOOM_RESAMPLE)
    assert np.array_equal(zoomed[56:168], np.asarray(expected))


@pytest.mark.parametrize("bad, says", [
    ("zoom(10, 10, 300, 100)", "outside"),
    ("zoom(50, 50, 20, 80)", "outside"),
    ("zoom(1, 2, 3)", "four integer"),
    ("zoom(a, b, c, d)", "four integer"),
    ("zoom 1 2 3 4", "could not read"),
    ("zoom(10, 10, 12, 12)", "smaller"),
    ("answer()", "empty"),
    ("", "empty"),
])
def test_malformed_zoom_is_invalid_and_the_episode_goes_on(bad, says):
    env = VisionQAEnv(zoom=True)
    obs, info = env.reset(seed=3)
    new, reward, terminated, truncated, info = env.step(bad)
    assert info["valid_action"] is False and reward == 0.0 and not (terminated or truncated)
    assert says in new["text"]
    if "zoom" in bad:
        assert "zoom(x0, y0, x1, y1)" in new["text"]
    assert np.array_equal(new["images"][0], obs["images"][0])
    _, reward, terminated, _, info = env.step(f"answer({info['answer']})")
    assert reward == 1.0 and terminated and info["steps"] == 2


def test_zoom_mode_accepts_a_plain_answer_and_truncates_without_one():
    env = VisionQAEnv(zoom=True)
    _, info = env.reset(seed=8)
    _, reward, terminated, _, _ = env.step(info["answer"])
    assert reward == 1.0 and terminated
    env.reset(seed=8)
    for i in range(3):
        obs, reward, terminated, truncated, info = env.step("zoom(0, 0, 112, 112)")
        assert not terminated and truncated is (i == 2) and reward == 0.0
    assert "No steps left" in obs["text"] and info["won"] is False
    with pytest.raises(RuntimeError, match="reset"):
        env.step("answer(1)")


# ---------------------------------------------------------------------------------------------
# The expert, the rollout engine, errors


@pytest.mark.parametrize("zoom", [False, True])
def test_expert_wins_every_episode(zoom):
    env = VisionQAEnv(zoom=zoom, split="eval")
    kinds = set()
    for seed in range(20):
        _, info = env.reset(seed=seed)
        kinds.add(info["kind"])
        _, reward, terminated, _, info = env.step(env.expert_action())
        assert reward == 1.0 and terminated and info["won"], f"seed {seed}"
    assert kinds == set(KINDS)


def test_expert_wins_through_the_rollout_engine():
    from agents.rollout import collect
    from agents.simple import ExpertPolicy

    if "vision-qa" not in envs.list_envs():  # until envs/__init__.py registers it
        envs.register("vision-qa", "envs.vision_qa:VisionQAEnv", description="Vision QA")
    pool = envs.EnvPool("vision-qa", num_envs=6, num_workers=0, env_kwargs={"zoom": True})
    try:
        rollout = collect(pool, ExpertPolicy(VisionQAEnv.action_format), seeds=[0, 1, 2], group_size=2)
    finally:
        pool.close()
    assert len(rollout.trajectories) == 6 and all(t.won for t in rollout.trajectories)
    anchors = {t.group_id: {t2.steps[0].anchor for t2 in rollout.trajectories if t2.group_id == t.group_id}
               for t in rollout.trajectories}
    assert all(len(a) == 1 for a in anchors.values())  # a group shares its first state


@pytest.mark.parametrize("kwargs, message", [
    ({"kinds": ["pie_chart"]}, "bar_chart, line_chart, count_shapes, geometry, table"),
    ({"kinds": []}, "choose from"),
    ({"split": "test"}, "'train' or 'eval'"),
    ({"image_size": 64}, "image_size"),
    ({"image_size": (224,)}, "height, width"),
    ({"max_steps": 0}, "max_steps"),
    ({"render_mode": "human"}, "render_mode"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VisionQAEnv(**kwargs)


def test_step_before_reset_is_a_clear_error():
    with pytest.raises(RuntimeError, match="reset"):
        VisionQAEnv().step("7")
