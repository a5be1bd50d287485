"""Issue 19 (items 4-6): config values are checked before any work, a damaged checkpoint is named
(and skipped) on --resume, and trajectory files are written atomically and read with clear errors.

Every case here fails in well under a second on the fixed code; none builds a model or an env."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from algos.cli import main as cli_main

# A cheap run, so that the old code (which checked no values) failed fast instead of training
# for minutes; the bad value comes last and wins.
BASE = ["sft.episodes=4", "sft.epochs=1", "rl.iterations=1", "rl.tasks_per_iter=1", "rl.group_size=2",
        "eval.episodes=2", "env.workers=0", "tensorboard=false", "progress=false", "env.kwargs={max_steps: 2}"]


@pytest.mark.parametrize("override, message", [
    # these used to crash with a traceback after the pool and the model were built
    ("rl.group_size=0", "rl.group_size=0 is out of range: it must be an integer >= 1"),
    ("rl.tasks_per_iter=0", "rl.tasks_per_iter=0 is out of range: it must be an integer >= 1"),
    ("save_every=0", "save_every=0 is out of range: it must be an integer >= 1"),
    ("keep_checkpoints=0", "keep_checkpoints=0 is out of range: it must be an integer >= 1"),
    ("rl.minibatch_size=0", "rl.minibatch_size=0 is out of range: it must be an integer >= 1"),
    ("sft.batch_size=0", "sft.batch_size=0 is out of range: it must be an integer >= 1"),
    ("sft.epochs=0", "sft.epochs=0 is out of range: it must be an integer >= 1"),
    ("sft.episodes=-1", "sft.episodes=-1 is out of range: it must be an integer >= 1"),
    ("rl.lr=-1", "rl.lr=-1.0 is out of range: it must be a finite number > 0"),
    ("rl.lr=nan", "rl.lr=nan is out of range: it must be a finite number > 0"),
    ("rl.lr=inf", "rl.lr=inf is out of range: it must be a finite number > 0"),
    ("sft.lr=-1", "sft.lr=-1.0 is out of range: it must be a finite number > 0"),
    # these used to pass silently with exit 0
    ("rl.iterations=-1", "rl.iterations=-1 is out of range: it must be an integer >= 0"),
    ("rl.temperature=-1", "rl.temperature=-1.0 is out of range: it must be a finite number >= 0"),
    ("rl.ppo_epochs=0", "rl.ppo_epochs=0 is out of range: it must be an integer >= 1"),
    ("rl.max_new_tokens=0", "rl.max_new_tokens=0 is out of range: it must be an integer >= 1"),
    ("threads=0", "threads=0 is out of range: it must be an integer >= 1 (or null)"),
    ("env.history_length=-1", "env.history_length=-1 is out of range: it must be an integer >= 0"),
    ("loss.clip_low=-1", "loss.clip_low=-1.0 is out of range: it must be a finite number >= 0"),
    ("algo.gigpo.gamma=2", "algo.gigpo.gamma=2.0 is out of range: it must be a finite number in [0, 1]"),
    # these used to end in a traceback and exit 1
    ("env.id=nope", "env.id=nope: unknown environment 'nope'."),
    ("env.workers=-1", "env.workers=-1 is out of range: it must be an integer >= 0"),
    ("env.kwargs={nope: 1}", "env.kwargs: environment 'sokoban' got unknown option(s) ['nope']; it accepts: "),
])
def test_bad_values_exit_2_with_one_line_before_any_work(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    assert cli_main(["train", f"out_dir={out}", *BASE, override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"groupwise train: {message}"), err
    assert err.count("\n") == 1  # one line
    assert not out.exists()


def test_unknown_env_names_the_closest_one(tmp_path, capsys):
    assert cli_main(["train", f"out_dir={tmp_path / 'run'}", "env.id=sokobn"]) == 2
    assert "Did you mean 'sokoban'?" in capsys.readouterr().err


def test_the_console_command_exits_2(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "algos.cli", "train", f"out_dir={out}", "rl.lr=nan"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "groupwise train: rl.lr=nan is out of range: it must be a finite number > 0"
    assert not out.exists()


# --- --resume with damaged checkpoints ----------------------------------------------------------

def _fake_run(out, iterations=(1,)):
    from algos.checkpoint import save_checkpoint
    from algos.config import apply_overrides, to_dict
    from algos.train_config import TrainConfig

    cfg = to_dict(apply_overrides(TrainConfig(), [f"out_dir={out}", *BASE]))
    for it in iterations:
        save_checkpoint(out / "checkpoints", {"iteration": it, "config": cfg, "model": {"w": torch.zeros(64)}},
                        keep_last=None)
    return out / "checkpoints"


@pytest.mark.parametrize("name", ["model.pt", "meta.json"])
def test_resume_with_no_intact_checkpoint_exits_2_naming_the_file(tmp_path, capsys, name):
    ckpts = _fake_run(tmp_path / "run")
    target = ckpts / "ckpt-000001" / name
    target.write_bytes(target.read_bytes()[:40])
    assert cli_main(["train", "--resume", f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("groupwise train: --resume: no intact checkpoint in ") and str(target) in err
    assert "PytorchStreamReader" not in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_resume_picks_the_newest_intact_checkpoint(tmp_path, monkeypatch):
    """The trainer's resume path loads the fallback checkpoint (the run itself is stopped right after)."""
    import algos.train as train_mod
    from algos.checkpoint import CheckpointWarning

    ckpts = _fake_run(tmp_path / "run", iterations=(1, 2))
    model_pt = ckpts / "ckpt-000002" / "model.pt"
    model_pt.write_bytes(model_pt.read_bytes()[:100])
    seen = {}

    class Stop(Exception):
        pass

    def stop_at_config(saved, given, overrides):  # called with the loaded checkpoint's config
        seen["config"] = saved
        raise Stop

    monkeypatch.setattr(train_mod, "resumed_config", stop_at_config)
    real = train_mod.load_latest
    monkeypatch.setattr(train_mod, "load_latest", lambda d: seen.setdefault("state", real(d)))
    with pytest.warns(CheckpointWarning, match=r"ckpt-000002/model\.pt .*loading ckpt-000001"), pytest.raises(Stop):
        train_mod.main(["--resume", f"out_dir={tmp_path / 'run'}"])
    assert seen["state"]["iteration"] == 1


# --- trajectory files -------------------------------------------------------------------------

def _traj(i: int, response: str = "<action>up</action>", info: dict | None = None):
    from agents.records import StepRecord, Trajectory

    step = StepRecord(group_id=i, traj_id=i, turn=0, messages=[{"role": "user", "content": "go"}], prompt_ids=[1],
                      response_ids=[2], logprobs=[-0.5], response=response, action="up", well_formed=True,
                      parse_reason="", valid=True, reward=1.0, anchor="a", observation="Sokoban ü 漢字",
                      info=info or {})
    return Trajectory(traj_id=i, group_id=i, seed=i, steps=[step])


def test_lone_surrogate_is_written_escaped_and_reads_back_the_same(tmp_path):
    from agents.records import read_jsonl, write_jsonl

    path = write_jsonl([_traj(i) for i in range(8)], tmp_path / "t.jsonl")
    trajs = [_traj(i, response="bad byte \udcff here" if i == 3 else "<action>up</action>") for i in range(8)]
    write_jsonl(trajs, path)  # the old code truncated the file at line 4 and raised UnicodeEncodeError
    lines = path.read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 8
    assert "漢字" in lines[0]  # other lines keep their text as UTF-8, readable
    assert "\\udcff" in lines[3]  # the unencodable one is escaped
    back = read_jsonl(path)
    assert [t.to_json() for t in back] == [t.to_json() for t in trajs]
    assert back[3].steps[0].response == "bad byte \udcff here"


def test_a_record_that_cannot_be_encoded_leaves_the_old_file_untouched(tmp_path):
    from agents.records import write_jsonl

    path = write_jsonl([_traj(i) for i in range(8)], tmp_path / "t.jsonl")
    before = path.read_bytes()
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match=r"trajectory 1 \(traj_id 1\) cannot be written"):
        write_jsonl([_traj(0), _traj(1, info={"loop": loop}), _traj(2)], path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]  # no temporary file left behind

    def failing():
        yield _traj(0)
        raise RuntimeError("the producer died")

    with pytest.raises(RuntimeError):
        write_jsonl(failing(), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


@pytest.mark.parametrize("bad_line, expected", [
    (b"\xff\xfe not utf-8\n", "not UTF-8"),
    (b"[1, 2]\n", "expected a JSON object, got list"),
    (b'{"foo": 1}\n', "not a groupwise trajectory line"),
    (b'{"traj_id": 1, "group_id": 0, "seed": 0, "steps": [7]}\n', "not a groupwise trajectory line"),
    (b'{"traj_id": 1, "group_id": 0, "seed": 0, "steps": [{"turn": 0}]}\n', "not a groupwise trajectory line"),
    (b'{"traj_id": 1, "group_id": 0, "seed": 0, "steps": [', "not a groupwise trajectory line"),  # truncated
])
def test_read_errors_name_the_file_and_line(tmp_path, bad_line, expected):
    from agents.records import read_jsonl, write_jsonl

    path = write_jsonl([_traj(0), _traj(1)], tmp_path / "t.jsonl")
    path.write_bytes(path.read_bytes() + b"\n" + bad_line)  # a blank line 3, the bad one is line 4
    with pytest.raises(ValueError) as e:
        read_jsonl(path)
    assert str(e.value).startswith(f"{path}:4: ") and expected in str(e.value)
    assert "\n" not in str(e.value)
