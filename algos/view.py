"""`groupwise view PATH`: one static HTML page showing what the trainer saw and computed.

PATH is a run folder (the `out_dir` of `groupwise train`, whose rollouts/iter-*.jsonl the trainer
saved: algos/saved_rollouts.py) or one such file (a `groupwise rollout --out` file works too; it
has no advantages). The page needs no server and reaches no network: the data, the script and the
styles are inline (the template is view.html beside this file).

Each task group's data sits in its own `<script type="application/json">` block, parsed only when
the group is opened: the browser reads a 64 groups x 8 trajectories x 50 steps page in well under a
second (benchmarks/view_bench.py) because it never builds the DOM of groups nobody looks at.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from algos.saved_rollouts import ROLLOUTS_DIR, read_rollouts, rollout_files

TEMPLATE = Path(__file__).with_name("view.html")


class ViewError(ValueError):
    """PATH cannot be viewed; the message says what to pass instead."""


def find_rollouts(path: str | Path, iterations: Sequence[int] = ()) -> tuple[Path | None, list[Path]]:
    """(the run folder or None, the rollout files to show) for a run folder, its rollouts/ folder or one file."""
    path = Path(path)
    what = ("pass a run folder (the out_dir of `groupwise train`, with rollouts/iter-*.jsonl) or one saved "
            "rollouts file (rollouts/iter-NNNNNN.jsonl)")
    if not path.exists():
        raise ViewError(f"{path} does not exist; {what}")
    if path.is_file():
        return None, [path]
    run = path.parent if path.name == ROLLOUTS_DIR and not (path / ROLLOUTS_DIR).is_dir() else path
    files = rollout_files(run)
    if not files:
        raise ViewError(f"{path} holds no saved rollouts (no {ROLLOUTS_DIR}/iter-*.jsonl); {what}. The trainer "
                        f"writes them at each evaluation, or every N iterations with save_rollouts_every=N")
    if iterations:
        wanted = {f"iter-{i:06d}.jsonl" for i in iterations}
        chosen = [f for f in files if f.name in wanted]
        if len(chosen) != len(wanted):
            have = ", ".join(str(int(f.stem.split("-")[1])) for f in files)
            raise ViewError(f"{run} has no saved rollouts for iteration(s) "
                            f"{sorted(set(iterations) - {int(f.stem.split('-')[1]) for f in chosen})}; it has {have}")
        files = chosen
    return run, files


def _frame(step: dict[str, Any]) -> str | None:
    """The screenshot the step was chosen from: the last image of the prompt's last message that has one."""
    for message in reversed(step.get("messages") or []):
        content = message.get("content")
        if isinstance(content, list):
            images = [p["image"] for p in content if isinstance(p, dict) and isinstance(p.get("image"), str)]
            if images:
                return images[-1]
    return None


def _group_payload(trajs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page shows of one task group; frames are stored once per group (equal states repeat)."""
    frames: dict[str, int] = {}
    out = []
    for t in trajs:
        steps = []
        for s in t["steps"]:
            frame = _frame(s)
            if frame is not None:
                frame = frames.setdefault(frame, len(frames))
            steps.append({"turn": s.get("turn"), "obs": s.get("observation", ""), "response": s.get("response", ""),
                          "action": s.get("action"), "reason": s.get("parse_reason", ""),
                          "reward": s.get("reward"), "valid": s.get("valid"), "anchor": s.get("anchor_group"),
                          "adv": s.get("advantage"), "terms": s.get("terms") or {}, "clip": s.get("clip"),
                          "trained": s.get("trained"), "frame": frame})
        out.append({"id": t.get("traj_id"), "won": bool(t.get("won")), "ret": t.get("episode_return"),
                    "error": t.get("error"), "steps": steps})
    return {"trajs": out, "frames": list(frames)}


def _summary(key: str, iteration: int | None, trajs: list[dict[str, Any]]) -> dict[str, Any]:
    """The group's line in the index (parsed at load): enough to list and filter without its steps."""
    first = trajs[0]
    info = (first["steps"][0].get("info") or {}) if first["steps"] else {}

    def episode_adv(t: dict[str, Any]) -> float | None:
        # the episode term where the estimator splits its advantage, else the mean advantage
        values = [s["terms"]["episode"] if "episode" in (s.get("terms") or {}) else s.get("advantage")
                  for s in t["steps"]]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    return {"key": key, "iteration": iteration, "group": first.get("group_id"), "seed": first.get("seed"),
            "task": first.get("task") or "", "task_type": info.get("task_type") or "",
            "trajs": [t.get("traj_id") for t in trajs], "won": [bool(t.get("won")) for t in trajs], "returns": [t.get("episode_return") for t in trajs],
            "lengths": [len(t["steps"]) for t in trajs], "episode_adv": [episode_adv(t) for t in trajs],
            "errors": [t.get("error") for t in trajs]}


def _curves(run: Path | None) -> dict[str, list]:
    """The success curves success.png draws (evaluation and training batches), from metrics.jsonl."""
    if run is None or not (run / "metrics.jsonl").exists():
        return {}
    from algos.logger import read_jsonl

    records = read_jsonl(run / "metrics.jsonl")
    return {key: [[r["iteration"], r[key]] for r in records if isinstance(r.get(key), (int, float))]
            for key in ("eval/success", "rollout/success")}


def _script_json(value: Any) -> str:
    # inside <script> only "</" can end the block early; "<\/" is the same JSON string
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def build_page(path: str | Path, iterations: Sequence[int] = ()) -> str:
    """The HTML of the view of `path` (see `find_rollouts`)."""
    run, files = find_rollouts(path, iterations)
    index: list[dict[str, Any]] = []
    blocks: list[str] = []
    meta: dict[str, Any] = {"estimator": None, "terms": [], "scale": {}}
    for f in files:
        lines = read_rollouts(f)
        groups: dict[Any, list[dict[str, Any]]] = {}
        for t in lines:
            groups.setdefault(t.get("group_id"), []).append(t)
        iteration = lines[0].get("iteration") if lines else None
        meta["estimator"] = meta["estimator"] or (lines[0].get("estimator") if lines else None)
        magnitudes: list[float] = []
        for trajs in groups.values():
            key = f"{iteration}-{trajs[0].get('group_id')}"
            index.append(_summary(key, iteration, trajs))
            for t in trajs:
                for s in t["steps"]:
                    terms = s.get("terms") or {}
                    meta["terms"] += [k for k in terms if k not in meta["terms"]]
                    magnitudes.extend(abs(v) for v in (s.get("advantage"), *terms.values()) if v is not None)
            blocks.append(f'<script type="application/json" id="group-{html.escape(key)}">'
                          f'{_script_json(_group_payload(trajs))}</script>')
        # one bar scale per iteration, robust to a few outliers (a win's +10 would flatten the rest)
        # keyed as the page's String(iteration) spells it ("null" for a file without iterations)
        meta["scale"][json.dumps(iteration)] = float(np.quantile(magnitudes, 0.95)) if any(magnitudes) else 1.0
    title = f"groupwise view: {(run or files[0]).resolve().name}"
    data = {"title": title, "source": str(run or files[0]), "groups": index,
            "iterations": sorted({g["iteration"] for g in index if g["iteration"] is not None}),
            "curves": _curves(run), **meta}
    values = {"TITLE": html.escape(title), "INDEX": _script_json(data), "GROUPS": "\n".join(blocks)}
    # one pass, so a "{{...}}" inside the data is never taken for a placeholder
    return re.sub(r"\{\{(TITLE|INDEX|GROUPS)\}\}", lambda m: values[m.group(1)], TEMPLATE.read_text(encoding="utf-8"))


def default_out(path: str | Path) -> Path:
    """Next to the input: <run>/view.html for a run folder, <file>.html for a file."""
    path = Path(path)
    if path.is_file():
        return path.with_suffix(".html")
    run = path.parent if path.name == ROLLOUTS_DIR and not (path / ROLLOUTS_DIR).is_dir() else path
    return run / "view.html"


def write_view(path: str | Path, out: str | Path | None = None, iterations: Sequence[int] = ()) -> Path:
    """Write the view of `path` to `out` (default `default_out(path)`); its path."""
    page = build_page(path, iterations)
    target = Path(out) if out else default_out(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target
