"""A small OpenAI-compatible server around the hf backend (`groupwise serve-model`).

Serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (n=1, no streaming) for one
`HFPolicy`, so that anything speaking the OpenAI chat API (the `openai` policy backend, eval
scripts, other tools) can use a local transformers model. Loopback only unless asked otherwise.

Request fields read: ``model`` (must be the served name), ``messages`` (string or text parts;
``image_url`` parts with ``data:`` URIs for VLMs), ``temperature`` (default 1; 0 means greedy),
``top_p``, ``max_tokens`` / ``max_completion_tokens``, ``stop``, ``seed``, ``logprobs``.
``top_logprobs`` lists come back empty. Other fields are ignored.

Response extras beyond the OpenAI schema (clients that do not know them ignore them):
- each ``logprobs.content`` entry has ``token_id``, the vocabulary id of the token;
- the choice has ``token_ids`` (response ids, EOS included when produced) and ``stop_reason`` (the
  matched stop string, or null), the response has ``prompt_token_ids`` (the chat template's ids).

Log-probs are the hf backend's: the temperature-1 log-softmax of the model at each generated token,
whatever temperature / top_p sampled it. As in the OpenAI API, ``content`` leaves a matched stop
string out.

Batching: concurrent requests are collected for `batch_wait` seconds after the first one arrives
(at most `max_batch`) and those with the same sampling options share one `HFPolicy.generate` call.
A seeded request that samples (temperature > 0) is generated alone, so its output depends only on
its prompt and seed. Generation runs in one worker thread, one batch at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import io
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from starlette.requests import Request as HTTPRequest  # at module level: FastAPI resolves annotations here

from .policy import Generation, Request, SamplingParams

__all__ = ["create_app", "ModelServer", "main"]


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class _Pending:
    request: Request
    sampling: SamplingParams
    key: Any
    future: asyncio.Future = field(repr=False)


class _Batcher:
    """Collects concurrent requests into `generate` calls on one worker thread."""

    def __init__(self, policy: Any, max_batch: int, batch_wait: float):
        self.policy, self.max_batch, self.batch_wait = policy, max(1, int(max_batch)), float(batch_wait)
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hf-generate")

    async def submit(self, request: Request, sampling: SamplingParams) -> Generation:
        if self._worker is None:  # started lazily, on the loop that serves the app
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        sampled_with_seed = not sampling.greedy and sampling.seed is not None
        key = object() if sampled_with_seed else (sampling.greedy, sampling.temperature, sampling.top_p,
                                                  sampling.max_new_tokens, sampling.stop)
        item = _Pending(request, sampling, key, asyncio.get_running_loop().create_future())
        await self._queue.put(item)
        return await item.future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(self.batch_wait)
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            groups: dict[Any, list[_Pending]] = {}
            for item in batch:
                groups.setdefault(item.key, []).append(item)
            for items in groups.values():
                items = [i for i in items if not i.future.done()]  # a client may have gone away
                if not items:
                    continue
                try:
                    gens = await loop.run_in_executor(self._executor, self.policy.generate,
                                                      [i.request for i in items], items[0].sampling)
                except Exception as exc:  # reported to each waiting request; the worker goes on
                    for i in items:
                        if not i.future.done():
                            i.future.set_exception(exc)
                    continue
                for i, g in zip(items, gens):
                    if not i.future.done():
                        i.future.set_result(g)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False)


# ---- request parsing -----------------------------------------------------------------------------


def _decode_image(url: str) -> Any:
    import numpy as np
    from PIL import Image

    if not url.startswith("data:"):
        raise _BadRequest("only data: URIs are accepted for images (this server does not fetch URLs)")
    try:
        payload = base64.b64decode(url.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))
    except Exception as exc:
        raise _BadRequest(f"cannot decode the image data URI: {exc}") from exc


def _messages(raw: Any, takes_images: bool) -> list[dict[str, Any]]:
    """OpenAI messages -> the hf backend's chat (text parts joined; images as numpy parts)."""
    if not isinstance(raw, list) or not raw:
        raise _BadRequest("'messages' must be a non-empty list")
    out = []
    for m in raw:
        if not isinstance(m, dict) or "role" not in m:
            raise _BadRequest("each message needs a 'role' and a 'content'")
        content = m.get("content")
        if isinstance(content, list):
            parts: list[dict[str, Any]] = []
            for p in content:
                kind = p.get("type") if isinstance(p, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": str(p.get("text", ""))})
                elif kind == "image_url":
                    if not takes_images:
                        raise _BadRequest("this model takes no images (it is not a vision-language model)")
                    url = p["image_url"]["url"] if isinstance(p.get("image_url"), dict) else p.get("image_url")
                    parts.append({"type": "image", "image": _decode_image(str(url))})
                else:
                    raise _BadRequest(f"unsupported content part type {kind!r} (use 'text' or 'image_url')")
            if not takes_images:
                content = "".join(p["text"] for p in parts)
            else:
                content = parts
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise _BadRequest("message 'content' must be a string or a list of parts")
        out.append({"role": str(m["role"]), "content": content})
    return out


def _sampling(body: dict[str, Any], default_max_tokens: int) -> SamplingParams:
    def number(name: str, default: float, lo: float, hi: float) -> float:
        value = body.get(name)
        if value is None:
            return default
        if not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise _BadRequest(f"'{name}' must be a number in [{lo}, {hi}], got {value!r}")
        return float(value)

    if body.get("n", 1) != 1:
        raise _BadRequest("only n=1 is supported")
    if body.get("stream"):
        raise _BadRequest("streaming is not supported")
    temperature = number("temperature", 1.0, 0.0, 2.0)
    top_p = number("top_p", 1.0, 0.0, 1.0)
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens")) or default_max_tokens
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise _BadRequest(f"'max_tokens' must be a positive integer, got {max_tokens!r}")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(str(s) for s in stop)
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise _BadRequest(f"'seed' must be an integer, got {seed!r}")
    greedy = temperature == 0.0
    return SamplingParams(temperature=1.0 if greedy else temperature, top_p=top_p, max_new_tokens=max_tokens,
                          stop=stop, seed=seed, greedy=greedy)


def _completion(policy: Any, model: str, gen: Generation, stops: Sequence[str], logprobs: bool) -> dict[str, Any]:
    text, stop_reason = gen.text, None
    if not gen.truncated:
        stop_reason = next((s for s in stops if text.endswith(s)), None)
        if stop_reason is not None:
            text = text[: len(text) - len(stop_reason)]
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "length" if gen.truncated else "stop",
        "stop_reason": stop_reason,
        "token_ids": list(gen.response_ids),
        "logprobs": None,
    }
    if logprobs:
        tok = policy.tokenizer
        choice["logprobs"] = {"content": [
            {"token": tok.decode([t]), "logprob": lp, "bytes": list(tok.decode([t]).encode("utf-8")),
             "top_logprobs": [], "token_id": t}
            for t, lp in zip(gen.response_ids, gen.logprobs)]}
    n_prompt, n_resp = len(gen.prompt_ids), len(gen.response_ids)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "choices": [choice], "prompt_token_ids": list(gen.prompt_ids),
        "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_resp, "total_tokens": n_prompt + n_resp},
    }


def _error(status: int, message: str, code: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": code, "param": None, "code": code}},
                        status_code=status)


# ---- the app -------------------------------------------------------------------------------------


def create_app(policy: Any, model_name: str, api_key: str | None = None, max_batch: int = 16,
               batch_wait: float = 0.005, default_max_tokens: int = 256) -> Any:
    """The FastAPI app serving `policy` (an `HFPolicy`) as `model_name`.

    api_key: when set, requests must carry ``Authorization: Bearer <api_key>`` (else 401).
    """
    from fastapi import FastAPI

    batcher = _Batcher(policy, max_batch, batch_wait)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        batcher.close()

    app = FastAPI(title="groupwise model server", lifespan=lifespan)
    app.state.batcher = batcher

    def check_key(http: HTTPRequest) -> Any:
        if api_key is not None and http.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                          "invalid_api_key")
        return None

    @app.get("/v1/models")
    async def models(http: HTTPRequest) -> Any:
        denied = check_key(http)
        if denied is not None:
            return denied
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "groupwise"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HTTPRequest) -> Any:
        denied = check_key(http)
        if denied is not None:
            return denied
        try:
            try:
                body = await http.json()
            except ValueError as exc:
                raise _BadRequest(f"the body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise _BadRequest("the body must be a JSON object")
            if body.get("model") != model_name:
                raise _BadRequest(f"the model {body.get('model')!r} does not exist; this server serves "
                                  f"{model_name!r}", 404, "model_not_found")
            messages = _messages(body.get("messages"), takes_images=getattr(policy, "is_vlm", False))
            sampling = _sampling(body, default_max_tokens)
        except _BadRequest as exc:
            return _error(exc.status, str(exc), exc.code)
        try:
            gen = await batcher.submit(Request(messages=messages), sampling)
        except ValueError as exc:  # e.g. a prompt the model cannot take
            return _error(400, str(exc), "invalid_request_error")
        return _completion(policy, model_name, gen, sampling.stop, bool(body.get("logprobs")))

    return app


class ModelServer:
    """`LoopbackServer` serving `create_app(policy, model_name, ...)`; a context manager.

        with ModelServer(HFPolicy(path), "tiny") as server:
            OpenAIPolicy(server.url + "/v1", "tiny").generate(requests)
    """

    def __init__(self, policy: Any, model_name: str, host: str = "127.0.0.1", port: int = 0,
                 allow_remote: bool = False, **app_kwargs: Any):
        from tools.serving import LoopbackServer

        self.app = create_app(policy, model_name, **app_kwargs)
        self._server = LoopbackServer(self.app, host, port, allow_remote=allow_remote)
        self._server.name = "model server"

    @property
    def url(self) -> str:
        """The server root (the OpenAI base URL is ``url + "/v1"``)."""
        return self._server.url

    def start(self) -> "ModelServer":
        self._server.start()
        return self

    def wait(self) -> None:
        self._server.wait()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """`groupwise serve-model`: load a model with the hf backend and serve it until Ctrl-C."""
    from tools.serving import is_loopback, serve_until_interrupted

    p = argparse.ArgumentParser(prog="groupwise serve-model",
                                description="Serve a local model over an OpenAI-compatible chat API (/v1).")
    p.add_argument("--model", required=True, help="model folder (transformers, or with --gguf-file)")
    p.add_argument("--gguf-file", default=None)
    p.add_argument("--name", default=None, help="the served model name (default: the folder's name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    p.add_argument("--api-key", default=os.environ.get("GROUPWISE_SERVE_API_KEY"),
                   help="require this bearer token (default: $GROUPWISE_SERVE_API_KEY; none when unset)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batch", type=int, default=16, help="requests per generate call at most")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long to collect a batch")
    p.add_argument("--max-tokens", type=int, default=256, help="max_tokens when a request gives none")
    args = p.parse_args(argv)
    if not args.allow_remote and not is_loopback(args.host):  # checked before loading the model
        print(f"error: --host {args.host} is not loopback and would expose the server to the network: "
              f"add --allow-remote if that is what you want", file=sys.stderr)
        return 1
    try:
        from .hf import HFPolicy

        policy = HFPolicy(args.model, device=args.device, gguf_file=args.gguf_file)
        name = args.name or Path(args.model).name
        server = ModelServer(policy, name, args.host, args.port, allow_remote=args.allow_remote,
                             api_key=args.api_key, max_batch=args.max_batch, batch_wait=args.batch_wait_ms / 1000,
                             default_max_tokens=args.max_tokens).start()
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"serving {name!r} at {server.url}/v1 (policy: openai:{server.url}/v1#{name}; Ctrl-C to stop)",
          flush=True)
    serve_until_interrupted(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
