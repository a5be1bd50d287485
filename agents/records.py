"""What a rollout records: one `StepRecord` per agent decision, grouped into `Trajectory`s.

The fields follow algorithms.md §0.3 (uid -> `group_id`, traj_uid -> `traj_id`, turn_idx -> `turn`,
anchor_obs -> `anchor`, is_action_valid -> `valid`). Trajectories round-trip through JSONL; the
frames of VLM chats are stored in it as PNG data URIs.
"""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image


@dataclass
class StepRecord:
    group_id: int
    traj_id: int
    turn: int
    #: The chat that was sent to the policy (memory-built prompt, §0.2 layout 1).
    messages: list[dict[str, Any]]
    prompt_ids: list[int]
    response_ids: list[int]
    #: Log-probs of response_ids under the rollout weights (the trainer recomputes its own).
    logprobs: list[float]
    response: str  # raw model text
    action: str | None  # what the parser extracted
    well_formed: bool
    parse_reason: str
    valid: bool  # well formed and admissible for the env
    reward: float
    anchor: str  # pre-action state key (§1.3)
    observation: str  # pre-action observation text
    episode_return: float = 0.0  # filled in when the trajectory ends
    done: bool = False
    truncated_response: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    #: Mean log-prob of the env's ground truth (info["ground_truth"]) given this turn's prompt, under
    #: the rollout weights (the IGPO / A2TGPO probe, algorithms.md §4.1); None when not probed.
    probe: float | None = None
    #: Named sub-rewards of the step (info["reward_components"]) for multi-reward estimators (GDPO).
    components: dict[str, float] | None = None
    #: VLM steps: the processed images the policy generated from (Generation.pixel_inputs), which
    #: training feeds back with `prompt_ids`. Held in memory only: JSON keeps the frames instead.
    pixel_inputs: dict[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass
class Trajectory:
    traj_id: int
    group_id: int
    seed: int
    steps: list[StepRecord] = field(default_factory=list)
    won: bool = False
    episode_return: float = 0.0
    terminated: bool = False
    truncated: bool = False
    error: str | None = None  # set when the env failed (raised, hung, its worker died)
    task: str = ""
    rank: int = 0  # the process of a distributed run that played it (holds its chats and pixels)

    @property
    def length(self) -> int:
        return len(self.steps)

    def finish(self) -> None:
        self.episode_return = float(sum(s.reward for s in self.steps))
        for s in self.steps:
            s.episode_return = self.episode_return

    def to_json(self) -> dict[str, Any]:
        return asdict(self, dict_factory=json_fields)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Trajectory":
        data = dict(data)
        step_names = {f.name for f in fields(StepRecord)}
        steps = [StepRecord(**{k: v for k, v in s.items() if k in step_names}) for s in data.pop("steps", [])]
        for s in steps:
            s.messages = _decode_images(s.messages)
        names = {f.name for f in fields(cls)}
        return cls(steps=steps, **{k: v for k, v in data.items() if k in names})


def write_jsonl(trajectories: Iterable[Trajectory], path: str | Path) -> Path:
    """Write one JSON line per trajectory, atomically: into a temporary file beside `path`, renamed
    over it only when every line is written, so a failure leaves the old file as it was.

    Text is written as UTF-8; a line holding a string that UTF-8 cannot encode (a lone surrogate,
    e.g. from bytes decoded with errors="surrogateescape") is written with JSON's \\uXXXX escapes
    instead, which `read_jsonl` turns back into the same string. A trajectory that JSON cannot
    encode at all raises ValueError naming it, and nothing is replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as f:
            for i, t in enumerate(trajectories):
                f.write(_encode_line(t, i))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _encode_line(t: Trajectory, index: int) -> bytes:
    try:
        text = json.dumps(t.to_json(), ensure_ascii=False, default=_jsonable)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"trajectory {index} (traj_id {getattr(t, 'traj_id', '?')}) cannot be written as "
                         f"JSON: {exc}") from exc
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape the line (ASCII JSON reads back the same)
        return (json.dumps(t.to_json(), ensure_ascii=True, default=_jsonable) + "\n").encode("ascii")


def read_jsonl(path: str | Path) -> list[Trajectory]:
    """The trajectories of a JSONL file; a line that is not UTF-8 or not a trajectory is a ValueError
    naming the file and the line."""
    out = []
    with Path(path).open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}:{n}: not UTF-8 text ({exc})") from exc
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise TypeError(f"expected a JSON object, got {type(data).__name__}")
                out.append(Trajectory.from_json(data))
            except (ValueError, TypeError, AttributeError, KeyError, OSError) as exc:
                raise ValueError(f"{path}:{n}: not a groupwise trajectory line ({type(exc).__name__}: {exc})") from exc
    return out


_PNG_URI = "data:image/png;base64,"


def json_fields(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A record's (name, value) fields as JSON keeps them: without StepRecord.pixel_inputs, the
    tensors training reuses (the chat's frames are what is written)."""
    return {k: v for k, v in items if k != "pixel_inputs"}


def _jsonable(obj: Any) -> Any:
    # Frames (HxWx3 uint8, in VLM chats) become PNG data URIs: as JSON lists a 160x210 screenshot
    # takes ~400 kB, as PNG a few kB. Other numpy scalars and arrays sneak in through env infos.
    if isinstance(obj, np.ndarray) and obj.dtype == np.uint8 and obj.ndim == 3 and obj.shape[2] in (3, 4):
        buf = io.BytesIO()
        Image.fromarray(obj).save(buf, format="PNG")
        return _PNG_URI + base64.b64encode(buf.getvalue()).decode("ascii")
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _decode_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Image parts written as PNG data URIs back to HxWxC uint8 arrays (what the VLM path reads)."""
    for m in messages:
        for part in m.get("content") if isinstance(m.get("content"), list) else ():
            image = part.get("image") if isinstance(part, dict) else None
            if isinstance(image, str) and image.startswith(_PNG_URI):
                part["image"] = np.asarray(Image.open(io.BytesIO(base64.b64decode(image[len(_PNG_URI):]))))
    return messages
