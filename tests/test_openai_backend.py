"""The `openai` policy backend against a real OpenAI-compatible server on loopback.

The server is `agents.openai_server` around the hf backend with the tiny test model. Faults
(503s, slow answers) are injected by small ASGI wrappers around it or by tiny apps of their own.
"""

import asyncio
import base64
import io
import json
import socket
import time

import numpy as np
import pytest

from agents.hf import HFPolicy
from agents.openai_backend import OpenAIBackendError, OpenAIPolicy, chat_messages, parse_spec
from agents.openai_server import ModelServer, create_app
from agents.policy import Request, SamplingParams
from tools.serving import LoopbackServer

MODEL = "tiny"
BOARDS = ["#####\n#@$.#\n#####", "######\n#@ $.#\n######", "#####\n#.$@#\n#####", "####\n#@.#\n#$ #\n####"]
CHATS = [Request([{"role": "system", "content": "You play sokoban."}] * (i % 2)
                 + [{"role": "user", "content": f"board:\n{b}\nyour move?"}]) for i, b in enumerate(BOARDS)]


class Counting:
    """ASGI wrapper: counts chat requests, those in flight at once, and can answer the first
    `fail_first` of them with a 503 (fault injection)."""

    def __init__(self, app, fail_first: int = 0):
        self.app, self.fail_first = app, fail_first
        self.seen = self.in_flight = self.max_in_flight = 0

    def reset(self, fail_first: int = 0):
        self.seen = self.in_flight = self.max_in_flight = 0
        self.fail_first = fail_first

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            return await self.app(scope, receive, send)
        self.seen += 1
        if self.seen <= self.fail_first:
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error": {"message": "warming up"}}'})
            return
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return HFPolicy(tiny_model_dir)


@pytest.fixture(scope="module")
def served(hf):
    """(base URL, Counting wrapper) of the real server around `hf`."""
    counting = Counting(create_app(hf, MODEL, batch_wait=0.01))
    with LoopbackServer(counting) as server:
        yield server.url + "/v1", counting


@pytest.fixture()
def url(served):
    served[1].reset()
    return served[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- equality with the hf backend ------------------------------------------------------------------


def test_greedy_generations_and_logprobs_match_hf(hf, url):
    sampling = SamplingParams(greedy=True, max_new_tokens=12)
    want = hf.generate(CHATS, sampling)
    got = OpenAIPolicy(url, MODEL).generate(CHATS, sampling)
    for g, w in zip(got, want):
        assert g.text == w.text
        assert g.response_ids == w.response_ids and g.prompt_ids == w.prompt_ids
        assert g.truncated == w.truncated
        np.testing.assert_allclose(g.logprobs, w.logprobs, atol=1e-4)


def test_stop_string_is_kept_in_the_text_as_hf_does(hf, url):
    base = hf.generate(CHATS[:1], SamplingParams(greedy=True, max_new_tokens=12))[0].text
    stop = base[len(base) // 2:len(base) // 2 + 2]
    assert stop.strip(), f"the tiny model's greedy text is too short to cut: {base!r}"
    sampling = SamplingParams(greedy=True, max_new_tokens=12, stop=(stop,))
    want = hf.generate(CHATS[:1], sampling)[0]
    got = OpenAIPolicy(url, MODEL).generate(CHATS[:1], sampling)[0]
    assert got.text == want.text and got.text.endswith(stop) and not got.truncated
    assert got.response_ids == want.response_ids


def test_seeded_sampling_is_reproducible_and_group_copies_differ(url):
    policy = OpenAIPolicy(url, MODEL)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=10, seed=3)
    first = policy.generate([CHATS[0]] * 3, sampling)
    again = policy.generate([CHATS[0]] * 3, sampling)
    assert [g.response_ids for g in first] == [g.response_ids for g in again]
    assert len({tuple(g.response_ids) for g in first}) > 1  # each copy gets its own seed


def test_generate_works_inside_a_running_event_loop(url):
    async def inside():
        return OpenAIPolicy(url, MODEL).generate(CHATS[:2], SamplingParams(greedy=True, max_new_tokens=4))

    assert len(asyncio.run(inside())) == 2


# ---- concurrency, retries, errors ------------------------------------------------------------------


def test_concurrency_limit_is_respected(served, url):
    counting = served[1]
    OpenAIPolicy(url, MODEL, concurrency=2).generate(CHATS * 2, SamplingParams(greedy=True, max_new_tokens=6))
    assert counting.seen == 8 and counting.max_in_flight == 2


def test_retries_503_with_backoff_then_succeeds(served, url):
    served[1].reset(fail_first=2)
    gens = OpenAIPolicy(url, MODEL, max_retries=3, backoff=0.05).generate(
        CHATS[:1], SamplingParams(greedy=True, max_new_tokens=4))
    assert served[1].seen == 3 and gens[0].response_ids


def test_gives_up_after_max_retries_naming_url_and_status(served, url):
    served[1].reset(fail_first=5)
    with pytest.raises(OpenAIBackendError) as err:
        OpenAIPolicy(url, MODEL, max_retries=1, backoff=0.01).generate(CHATS[:1], SamplingParams(max_new_tokens=4))
    assert err.value.status == 503 and served[1].seen == 2
    assert f"{url}/chat/completions" in str(err.value) and "warming up" in str(err.value)
    assert "after 2 attempts" in str(err.value)


def test_bad_key_fails_at_once_with_a_clear_message(hf):
    counting = Counting(create_app(hf, MODEL, api_key="right"))
    with LoopbackServer(counting) as server:
        start = time.perf_counter()
        with pytest.raises(OpenAIBackendError) as err:
            OpenAIPolicy(server.url, MODEL, api_key="wrong", backoff=5).generate(CHATS[:1])
        assert time.perf_counter() - start < 2 and counting.seen == 1
        assert err.value.status == 401 and "API key" in str(err.value)
        ok = OpenAIPolicy(server.url, MODEL, api_key="right").generate(CHATS[:1], SamplingParams(max_new_tokens=2))
        assert ok[0].response_ids


def test_wrong_model_name_says_what_to_check(url):
    with pytest.raises(OpenAIBackendError) as err:
        OpenAIPolicy(url, "nope", backoff=5).generate(CHATS[:1])
    assert err.value.status == 404 and "'nope'" in str(err.value) and "models" in str(err.value)


def test_images_are_sent_as_png_data_uris_and_a_text_model_refuses_them(url):
    image = np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    request = Request([{"role": "user", "content": "what is shown?"}], images=[image])
    parts = chat_messages(request)[0]["content"]
    assert parts[0]["type"] == "image_url" and parts[1] == {"type": "text", "text": "what is shown?"}
    from PIL import Image

    payload = base64.b64decode(parts[0]["image_url"]["url"].split(",", 1)[1])
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(payload))), image)
    with pytest.raises(OpenAIBackendError) as err:
        OpenAIPolicy(url, MODEL, backoff=5).generate([request])
    assert err.value.status == 400 and "takes no images" in str(err.value)


def test_timeout_is_a_clear_error():
    async def slow(scope, receive, send):
        if scope["type"] == "http":
            await asyncio.sleep(1.0)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

    with LoopbackServer(slow) as server:
        with pytest.raises(OpenAIBackendError) as err:
            OpenAIPolicy(server.url, MODEL, timeout=0.2, max_retries=1, backoff=0.01).generate(CHATS[:1])
    assert err.value.status is None and "timeout=0.2s" in str(err.value) and server.url in str(err.value)


def test_unreachable_server_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(OpenAIBackendError) as err:
        OpenAIPolicy(url, MODEL, max_retries=2, backoff=0.01).generate(CHATS[:1])
    assert url in str(err.value) and "server running" in str(err.value) and "after 3 attempts" in str(err.value)


def test_policy_spec_parsing(url):
    assert parse_spec("openai:http://h:1/v1#org/model") == ("http://h:1/v1", "org/model")
    assert parse_spec("openai:http://h:1") == ("http://h:1", None)
    with pytest.raises(ValueError, match="http"):
        parse_spec("openai:h:1#m")
    assert OpenAIPolicy.from_spec(f"openai:{url}").model_name == MODEL  # the server's only model


# ---- the command line ------------------------------------------------------------------------------


def test_rollout_command_end_to_end(url, tmp_path, served):
    from algos.cli import main
    from agents.records import read_jsonl

    out = tmp_path / "trajs.jsonl"
    rc = main(["rollout", "--env", "sokoban", "--policy", f"openai:{url}#{MODEL}", "--episodes", "2",
               "--group-size", "2", "--workers", "0", "--max-new-tokens", "12", "--out", str(out)])
    assert rc == 0
    trajs = read_jsonl(out)
    assert len(trajs) == 2 and served[1].seen >= 2
    step = trajs[0].steps[0]
    assert step.response_ids and len(step.logprobs) == len(step.response_ids) and step.prompt_ids


def test_eval_command_prints_success(url, capsys):
    from algos.cli import main

    rc = main(["eval", "--env", "sokoban", "--policy", f"openai:{url}", "--episodes", "2", "--workers", "0",
               "--max-new-tokens", "8"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 2 and 0.0 <= report["success"] <= 1.0 and report["first_seed"] == 1_000_000


def test_eval_of_a_scripted_policy_uses_the_env_eval_split(capsys):
    from algos.cli import eval_env_kwargs, main

    assert eval_env_kwargs("math")["split"] == "eval" and "split" not in eval_env_kwargs("sokoban")
    assert main(["eval", "--env", "sokoban", "--policy", "expert", "--episodes", "3", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["success"] == 1.0


def test_eval_writes_every_task_outcome_for_paired_comparisons(tmp_path, capsys):
    from algos.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", "--env", "sokoban", "--policy", "random", "--episodes", "3", "--samples-per-task", "2",
                 "--seed", "500", "--workers", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    tasks = report["tasks"]
    assert tasks["seed"] == [500, 501, 502] and len(tasks["success"]) == 3
    # a task's outcome is the mean of its 2 episodes, and the overall success their mean
    assert all(v in (0.0, 0.5, 1.0) for v in tasks["success"])
    assert report["success"] == pytest.approx(sum(tasks["success"]) / 3, abs=1e-4)
    with pytest.raises(SystemExit, match="evaluation range"):  # training tasks live from 2^31 up
        main(["eval", "--env", "sokoban", "--policy", "random", "--seed", str(2**31), "--workers", "0"])


def test_rollout_command_reports_an_unreachable_server_cleanly(capsys):
    from algos.cli import main

    url = f"http://127.0.0.1:{free_port()}/v1"
    assert main(["rollout", "--env", "sokoban", "--policy", f"openai:{url}#{MODEL}", "--episodes", "1",
                 "--workers", "0"]) == 1
    assert url in capsys.readouterr().err


def test_serve_model_refuses_a_remote_host_without_allow_remote(tmp_path, capsys):
    from algos.cli import main

    assert main(["serve-model", "--model", str(tmp_path), "--host", "0.0.0.0"]) == 1
    assert "--allow-remote" in capsys.readouterr().err


def test_model_server_lists_its_model(hf):
    with ModelServer(hf, "served-name") as server:
        assert OpenAIPolicy.served_models(server.url) == ["served-name"]
