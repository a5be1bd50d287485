"""The README's Python examples run as written, and its test command is what CI runs."""

import re
from pathlib import Path

from gymnasium.utils.env_checker import check_env

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_python_examples_run():
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", README, re.S):
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["adv"].shape == (3,)
    env = namespace["env"]
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"text", "images", "anchor"}
    # the third-party engine example: TextWorld's coin collector, won by following its walkthrough
    coin = namespace["envs"].make("coin-collector")
    obs, info = coin.reset(seed=3)
    for _ in range(20):
        obs, reward, terminated, truncated, info = coin.step(coin.expert_action())
        if terminated or truncated:
            break
    assert info["won"] and reward == 1.0 and "coin" in obs["text"].lower()


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in README and "test-command" in ci
    command = README.split("<!-- test-command -->")[1].split("```bash\n")[1].split("```")[0].strip()
    assert command.startswith("pip install torch==2.13.0") and "pytest" in command


def test_the_tour_names_files_that_exist():
    """Every file and folder the README's tour names is in the tree (a moved or renamed module fails
    here). A name is looked up in its top-level folder, or in the sub-folder its line belongs to."""
    root = Path(__file__).parent.parent
    tour = README.split("## A tour")[1].split("```")[1]
    folder = sub = None
    missing = []
    for line in tour.splitlines():
        names = re.findall(r"^\s*(\w+/)", line) + re.findall(r"\w+\.py\b", line)  # item folders, any .py
        if not line.startswith(" ") and names:
            folder, sub = names[0].rstrip("/"), None
            assert (root / folder).is_dir(), folder
            names = names[1:]
        elif line.startswith("  ") and not line.startswith("   ") and names and names[0].endswith("/"):
            sub = names[0].rstrip("/")
        for name in names:
            here = [root / folder / name.rstrip("/")] + ([root / folder / sub / name] if sub else [])
            if not any(p.exists() for p in here):
                missing.append(f"{folder}/{name}")
    assert not missing, f"the README tour names paths that do not exist: {missing}"


def test_the_estimator_table_is_the_registry(capsys):
    from algos.cli import main
    from algos.registry import estimator, list_estimators, options_table

    built_in = [n for n in list_estimators() if (estimator(n).fn.__module__ or "").startswith("algos.")]
    assert options_table(built_in) in README, "README's estimator table is stale: paste `groupwise estimators`"
    assert main(["estimators"]) == 0
    printed = capsys.readouterr().out.splitlines()  # every registered estimator: tests may have added some
    assert all(row in printed for row in options_table(built_in).splitlines())


def test_the_add_your_own_estimator_example_trains_through_the_cli(tmp_path):
    """The README's estimator file and its command, on a tiny budget: it trains, and --help lists its option."""
    import json
    import subprocess
    import sys

    section = README.split("## Add your own estimator")[1].split("\n## ")[0]
    code = re.search(r"```python\n(# my_estimator.py\n.*?)```", section, re.S).group(1)
    (tmp_path / "my_estimator.py").write_text(code)
    command = re.search(r"```bash\n(groupwise train .*?)\n```", section, re.S).group(1).split()
    assert command[:4] == ["groupwise", "train", "--plugin", "my_estimator.py"]
    cli = [sys.executable, "-m", "algos.cli", *command[1:]]
    tiny = ["sft.episodes=4", "sft.epochs=1", "rl.iterations=1", "rl.tasks_per_iter=2", "rl.group_size=2",
            "rl.max_new_tokens=8", "eval.episodes=2", "env.workers=0", "tensorboard=false", "progress=false",
            "env.kwargs={max_steps: 4}", f"out_dir={tmp_path / 'run'}"]
    root = str(Path(__file__).parent.parent)
    env = {**__import__("os").environ, "PYTHONPATH": root}
    done = subprocess.run(cli + tiny, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["algo"] == "best_of_group" and summary["iterations"] == 1
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = [m for m in metrics if "adv/max" in m]
    assert trained and all(m["adv/max"] <= 1e-12 for m in trained)  # return minus the group's best is never > 0
    helped = subprocess.run(cli[:6] + ["--help"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert "algo.best_of_group.scale=1.0\n      multiplies every advantage" in helped.stdout
