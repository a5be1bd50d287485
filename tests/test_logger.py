from __future__ import annotations

import builtins
import json
import math
import warnings

import numpy as np
import pytest
import torch

from algos import logger as lg
from algos.logger import MetricsLogger, format_summary, plot_curves, plot_runs, read_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_log_writes_one_json_line_per_call(tmp_path):
    with MetricsLogger(tmp_path, use_tensorboard=False) as log:
        log.log(1, {"reward": 0.5, "loss": 1.25})
        log.log(2, {"reward": 0.75})
    rows = _lines(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [1, 2]
    assert rows[0]["reward"] == 0.5 and rows[0]["loss"] == 1.25 and "time" in rows[0]


def test_non_finite_and_non_numeric_values(tmp_path):
    log = MetricsLogger(tmp_path, use_tensorboard=False)
    log.log(1, {"nan": float("nan"), "inf": float("inf"), "np": np.float32(0.25),
                "npint": np.int64(3), "t": torch.tensor(1.5), "flag": True, "phase": "train",
                "none": None, "vec": [1, 2], "obj": object(), "tvec": torch.ones(3)})
    log.close()
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    row = json.loads(text)
    assert row["nan"] is None and row["inf"] is None
    assert row["np"] == 0.25 and row["npint"] == 3 and row["t"] == 1.5
    assert row["flag"] is True and row["phase"] == "train" and row["none"] is None
    assert row["vec"] is None and row["obj"] is None and row["tvec"] is None


def test_resume_truncates_later_steps(tmp_path):
    log = MetricsLogger(tmp_path, use_tensorboard=False)
    for step in range(1, 8):
        log.log(step, {"reward": step / 10})
    log.close()
    # Simulate a crash that left a partial line behind.
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 8, "rew')

    log = MetricsLogger(tmp_path, use_tensorboard=False, resume_step=4)
    log.log(5, {"reward": 0.55})
    log.close()
    steps = [r["iteration"] for r in _lines(tmp_path / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5]
    assert _lines(tmp_path / "metrics.jsonl")[-1]["reward"] == 0.55


def test_reopen_without_resume_appends_and_drops_partial_line(tmp_path):
    with MetricsLogger(tmp_path, use_tensorboard=False) as log:
        log.log(1, {"a": 1.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 2, "a"')
    with MetricsLogger(tmp_path, use_tensorboard=False) as log:
        log.log(2, {"a": 2.0})
    assert [r["iteration"] for r in _lines(tmp_path / "metrics.jsonl")] == [1, 2]


def test_tensorboard_scalars_written(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(tmp_path) as log:
        log.log(1, {"reward": 0.5, "bad": float("nan"), "phase": "x"})
        log.log(2, {"reward": 0.7, "bad": 1.0})
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "reward" in tags and "phase" not in tags
    assert [e.step for e in acc.Scalars("reward")] == [1, 2]
    assert [e.step for e in acc.Scalars("bad")] == [2]  # NaN skipped


def test_missing_tensorboard_warns_once(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(lg, "_warned_no_tensorboard", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = MetricsLogger(tmp_path / "a")
        second = MetricsLogger(tmp_path / "b")
    assert sum("TensorBoard unavailable" in str(w.message) for w in caught) == 1
    first.log(1, {"x": 1.0})  # still logs to JSONL
    first.close(), second.close()
    assert _lines(tmp_path / "a" / "metrics.jsonl")[0]["x"] == 1.0


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_plot_curves(tmp_path):
    with MetricsLogger(tmp_path, use_tensorboard=False) as log:
        for step in range(20):
            log.log(step, {"reward": math.sin(step / 3), "loss": 1 / (step + 1),
                           "sometimes": float("nan") if step % 2 else step})
    out = plot_curves(tmp_path / "metrics.jsonl", ["reward", "loss", "sometimes", "absent"],
                      tmp_path / "plots" / "curves.png", title="run")
    _assert_png(out)
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 20


def test_plot_runs_single_and_multi_seed(tmp_path):
    xs = range(10)
    runs = {
        "grpo": [[(x, x * 0.1 + s * 0.05) for x in xs] for s in range(3)],  # 3 seeds
        "gigpo": [(x, x * 0.12) for x in xs],  # one series
        "ragged": [[(0, 0.0), (5, 0.5)], [(0, 0.1), (3, 0.2), (9, 0.9)]],  # different x grids
        "empty": [],
    }
    _assert_png(plot_runs(runs, tmp_path / "runs.png", title="algos", ylabel="success"))
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        plot_runs({"bad": [[1.0, 2.0, 3.0]]}, tmp_path / "bad.png")


def test_format_summary():
    line = format_summary({"reward": 0.41234, "lr": 1e-5, "phase": "train", "iteration": 12,
                           "tokens": 1234567.0, "nan": float("nan"), "ok": True})
    assert line.startswith("iteration=12 | ")
    assert "reward=0.4123" in line and "lr=1.00e-05" in line and "tokens=1.23e+06" in line
    assert "phase=train" in line and "nan=nan" in line and "ok=True" in line
    assert "\n" not in line
    assert format_summary({"a": 1.0, "b": 2}, keys=["b"]) == "b=2"
