"""W&B tracking in offline mode: `groupwise train logger.wandb=true` writes a wandb run folder with the metrics."""

import json
import os
import struct
import subprocess
import sys

import pytest

from algos.config import ConfigError
from algos.tracking import check_wandb, wandb_mode
from algos.train_config import LoggerConfig

wandb = pytest.importorskip("wandb")

RUN = ["sft.enabled=false", "rl.iterations=1", "rl.tasks_per_iter=2", "rl.group_size=2", "rl.max_new_tokens=6",
       "eval.episodes=2", "env.workers=0", "tensorboard=false", "progress=false", "env.kwargs={max_steps: 3}"]


def _records(path):
    """The protobuf records of a .wandb file (a LevelDB-style log: 32 KiB blocks of chunks, each a
    7-byte header of crc32, length and type, FULL=1 or FIRST/MIDDLE/LAST=2/3/4)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk, out = 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            out.append(record)
            chunk = b""
    return out


def test_offline_run_folder_holds_the_metrics(tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    p = subprocess.run([sys.executable, "-m", "algos.cli", "train", f"out_dir={out}", *RUN, "logger.wandb=true",
                        "logger.wandb_mode=offline", "logger.wandb_run_name=smoke"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith((out / "wandb-run-id").read_text())
    history, names = {}, set()
    for record in _records(next(runs[0].glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            names.add(record.run.display_name)
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            history.setdefault(items["_step"], {}).update(items)
    assert names == {"smoke"}
    # the metrics metrics.jsonl has, at the same iterations (what TensorBoard gets: the finite numbers)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for line in logged:
        for key, value in line.items():
            if key not in ("iteration", "time") and isinstance(value, (int, float)):
                assert history[line["iteration"]][key] == pytest.approx(value), key
    assert "eval/success" in history[0] and "rollout/success" in history[1]
    # the sample table of the saved iteration, and the success curves
    assert history[1]["samples/_type"] == "table-file" and history[1]["samples/nrows"] > 0
    for curve in ("eval_success", "rollout_success"):  # a line plot logs its table as <key>_table
        assert any(h.get(f"curves/{curve}_table/_type") == "table-file" for h in history.values())
    table = json.loads(next((runs[0] / "files" / "media" / "table").glob("samples_*.table.json")).read_text())
    assert "advantage" in table["columns"] and "anchor_group" in table["columns"]


def test_mode_defaults_to_offline_and_a_missing_package_is_refused(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(LoggerConfig(wandb=True)) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(LoggerConfig(wandb=True)) == "disabled"
    assert wandb_mode(LoggerConfig(wandb=True, wandb_mode="online")) == "online"
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    check_wandb(LoggerConfig(wandb=False))
    with pytest.raises(ConfigError, match=r"pip install 'groupwise\[wandb\]'"):
        check_wandb(LoggerConfig(wandb=True))
