"""The worker side of EnvPool: operations on envs, run next to them (in a worker process, inline
for num_workers=0, or in a Ray actor), and the worker process's entry point.

The parent side (envs/pool.py) sends batches of `Op`s and reads back one `Outcome` per op.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import traceback
from multiprocessing.reduction import ForkingPickler
from typing import Any, NamedTuple, Sequence

from envs import registry
from envs.registry import EnvSpec, UnknownEnvError




class Op(NamedTuple):
    """One operation on one env. `local` is the env's index inside its worker."""

    kind: str  # "reset" | "step" | "call"
    local: int
    arg: Any  # (seed, options) for reset, the action for step, the method name for call
    quiet: bool = False  # replaying: report only success or the error, not the payload


# An outcome is ("ok", payload) or ("raised", reason); the parent adds ("lost", reason) for an
# operation whose worker hung or died.
Outcome = tuple[str, Any]


def describe(exc: BaseException, during: str) -> str:
    """`Type: message`, where it happened, and the last few frames of the traceback."""
    frames = "".join(traceback.format_tb(exc.__traceback__, limit=-3)).rstrip()
    return f"{type(exc).__name__}: {exc} (raised in {during})\n{frames}"


def run_op(envs: list, op: Op) -> Outcome:
    env = envs[op.local]
    try:
        if op.kind == "reset":
            seed, options = op.arg
            obs, info = env.reset(seed=seed, options=options)
            payload: Any = (obs, info)
        elif op.kind == "step":
            obs, reward, terminated, truncated, info = env.step(op.arg)
            payload = (obs, float(reward), bool(terminated), bool(truncated), info)
        elif op.kind == "call":
            attr = getattr(env, op.arg)
            payload = attr() if callable(attr) else attr
        else:
            raise ValueError(f"unknown operation {op.kind!r}")
    except Exception as exc:  # one env's bug must not touch its siblings
        return ("raised", describe(exc, op.kind if op.kind != "call" else f"{op.arg}()"))
    return ("ok", None if op.quiet else payload)


def run_batch(envs: list, ops: Sequence[Op], progress: Any = None) -> list[Outcome]:
    """Run `ops` in order; `progress.value` tells the parent which one is running."""
    outcomes = []
    for i, op in enumerate(ops):
        if progress is not None:
            progress.value = i
        outcomes.append(run_op(envs, op))
    if progress is not None:
        progress.value = len(ops)
    return outcomes


def ensure_registered(spec: EnvSpec) -> None:
    """Make the parent's registration of `spec.id` the one this process uses.

    Built-in envs are already registered by `import envs`; an env the user registered at run time
    in the parent exists here only through the spec the parent sent.
    """
    try:
        current = registry.spec(spec.id)
    except UnknownEnvError:
        current = None
    if current != spec:
        registry.register(spec.id, spec.entry_point, spec.description, **spec.defaults)


def send_outcomes(conn: Any, outcomes: list[Outcome], separate: bool) -> None:
    """Send the batch's outcomes; an unpicklable payload fails only its own env.

    `separate` pickles each outcome on its own (slower), so that the parent can unpickle them one
    by one: the parent asks for it after a reply it could not unpickle as a whole.
    """
    if separate:
        conn.send([pickled(outcome) for outcome in outcomes])
        return
    try:
        data = ForkingPickler.dumps(outcomes)
    except Exception:  # find the culprit(s); rare, so the slow per-outcome pass is fine
        data = ForkingPickler.dumps([picklable(outcome) for outcome in outcomes])
    conn.send_bytes(data)


def picklable(outcome: Outcome) -> Outcome:
    try:
        ForkingPickler.dumps(outcome)
        return outcome
    except Exception as exc:
        return ("raised", f"the env's result could not be pickled: {type(exc).__name__}: {exc}")


def pickled(outcome: Outcome) -> bytes:
    return bytes(ForkingPickler.dumps(picklable(outcome)))


def unpickled(data: bytes) -> Outcome:
    try:
        return pickle.loads(data)
    except Exception as exc:
        return ("raised", f"the env's result could not be unpickled in the pool's process: "
                          f"{type(exc).__name__}: {exc}")


def exit_when_orphaned(lifeline: Any) -> None:
    """Exit this process once the pool's process is gone, even while an env call is stuck.

    Only the pool's process holds the other end of `lifeline` and never writes to it, so a read
    returns EOF exactly when that process has exited. (The parent pid is no use under forkserver:
    the parent is the fork server, which itself stays up as long as any worker does.)
    """

    def watch() -> None:
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="envpool-lifeline", daemon=True).start()


def worker_main(conn: Any, lifeline: Any, spec: EnvSpec, env_kwargs: dict, count: int,
                 progress: Any) -> None:
    """Entry point of a worker process: build `count` envs, then serve batches until told to stop."""
    # Ctrl-C reaches the whole process group; the parent decides what to do, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_when_orphaned(lifeline)
    try:
        ensure_registered(spec)
        envs = [registry.make(spec.id, **env_kwargs) for _ in range(count)]
    except Exception as exc:
        text = describe(exc, f"building {spec.id!r}")
        try:
            conn.send(("error", text, exc))
        except Exception:  # the exception itself may not pickle
            conn.send(("error", text, None))
        return
    conn.send(("ready", os.getpid(), None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent went away
            break
        if message[0] == "close":
            break
        _, ops, separate = message
        send_outcomes(conn, run_batch(envs, ops, progress), separate)
    for env in envs:
        try:
            env.close()
        except Exception:
            pass
