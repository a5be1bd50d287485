"""The `openai` policy backend: any OpenAI-compatible chat server (vLLM, SGLang, a hosted API).

For evaluation and data collection, not for training: the trainer needs the prompt and response
token ids of every step, and most servers do not return them (see "What a Generation holds").

    policy = OpenAIPolicy("http://127.0.0.1:8000/v1", "my-model", concurrency=8)
    gens = policy.generate([Request([{"role": "user", "content": "hi"}])], SamplingParams(greedy=True))

Each `Request` becomes one ``POST {base_url}/chat/completions``; the requests of one `generate` call
run concurrently (httpx.AsyncClient, at most `concurrency` in flight). `generate` works from sync
code and from inside a running event loop (it then runs its own loop in a helper thread); async
callers can await `agenerate`.

Request body: ``messages`` (numpy / PIL images become ``image_url`` parts holding PNG data URIs,
`Request.images` go before the last message's text as the hf backend puts them), ``temperature``
(0 for greedy), ``top_p``, ``max_tokens``, ``stop``, ``seed`` and ``logprobs: true``. A seeded call
sends ``seed + i`` for its i-th request: servers that seed each request would otherwise give the G
copies of a task in a group the same answer.

What a Generation holds:
- ``text``: the message content. Servers leave a matched stop string out; when the choice names it
  (``stop_reason``, as vLLM and `agents.openai_server` do) it is put back, so the text ends with the
  stop string as the hf backend's does.
- ``logprobs``: one per generated token from ``choices[0].logprobs.content`` when the server returns
  them, else empty. They are whatever the server computes (vLLM: the raw model's log-probs).
- ``response_ids``: the choice's ``token_ids``, else each logprobs entry's ``token_id``
  (`agents.openai_server`), else ids parsed from ``token_id:N`` token strings (vLLM with
  ``extra_body={"return_tokens_as_token_ids": True}``); empty when the server gives none of these.
- ``prompt_ids``: the response's ``prompt_token_ids`` when present, else empty.
- ``truncated``: ``finish_reason == "length"``.

Failures: connection errors, timeouts, 429 and 5xx are retried `max_retries` times with
exponential backoff and jitter (a ``Retry-After`` header is honoured); other 4xx fail at once.
Every error is an `OpenAIBackendError` naming the URL, the status, the server's message and what
to check.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import os
import random
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .policy import Generation, Request, SamplingParams

__all__ = ["OpenAIPolicy", "OpenAIBackendError", "parse_spec", "image_data_uri"]

_TOKEN_ID = re.compile(r"^token_id:(\d+)$")


class OpenAIBackendError(RuntimeError):
    """A request to an OpenAI-compatible server failed; `url` and `status` (None: no HTTP answer)."""

    def __init__(self, message: str, url: str, status: int | None = None):
        super().__init__(message)
        self.url, self.status = url, status


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``openai:<base_url>#<model>`` -> (base_url, model); the model may be left out (None)."""
    if not spec.startswith("openai:"):
        raise ValueError(f"not an openai policy spec: {spec!r} (expected openai:<base_url>#<model>)")
    url, _, model = spec[len("openai:"):].partition("#")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"openai policy spec {spec!r}: the base URL must start with http:// or https:// "
                         f"(e.g. openai:http://127.0.0.1:8000/v1#my-model)")
    return url, (model or None)


def image_data_uri(image: Any) -> str:
    """A ``data:image/png;base64,...`` URI of an RGB uint8 array (HxWx3, HxW or HxWx4) or PIL image."""
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = arr[..., :3]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
            raise ValueError(f"an image must be HxWx3 uint8 (RGB); got an array of shape {arr.shape}")
        image = Image.fromarray(arr)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _image_part(image: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image_data_uri(image)}}


def chat_messages(request: Request) -> list[dict[str, Any]]:
    """The request's chat in OpenAI form: local images as image_url parts, `Request.images` added
    before the last message's text when the chat carries no image of its own."""
    messages, has_image = [], False
    for m in request.messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for p in content:
                if isinstance(p, dict) and p.get("type") == "image":
                    parts.append(_image_part(p["image"]))
                    has_image = True
                else:
                    has_image = has_image or (isinstance(p, dict) and p.get("type") == "image_url")
                    parts.append(p)
            m = {**m, "content": parts}
        messages.append(dict(m))
    if request.images and not has_image and messages:
        last = messages[-1]
        content = last.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        last["content"] = [_image_part(im) for im in request.images] + list(parts)
    return messages


@dataclass
class _Failure:
    """One failed attempt: what to report, and whether trying again may help."""

    message: str
    status: int | None
    retry: bool
    retry_after: float | None = None


class OpenAIPolicy:
    """Policy over an OpenAI-compatible ``/v1/chat/completions`` endpoint (see the module docstring).

    base_url: the server root or its ``/v1`` URL (``http://127.0.0.1:8000`` and
    ``http://127.0.0.1:8000/v1`` are the same). api_key: sent as a bearer token; defaults to
    ``$OPENAI_API_KEY`` (none is sent when neither is set). timeout: seconds per attempt (connect,
    read, write each). backoff: the first retry's delay in seconds, doubled per retry up to
    `max_backoff`, times a random factor in [0.5, 1). extra_body: more fields for every request
    (server-specific options). logprobs: ask for token log-probs (turn off for servers that refuse).
    """

    needs_expert_action = False

    def __init__(self, base_url: str, model: str, api_key: str | None = None, concurrency: int = 8,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5, max_backoff: float = 8.0,
                 logprobs: bool = True, extra_body: dict[str, Any] | None = None):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        #: The served model's name (not `model`: elsewhere `policy.model` is a local torch module).
        self.model_name = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency, self.timeout, self.max_retries = int(concurrency), float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.logprobs = logprobs
        self.extra_body = dict(extra_body or {})

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> "OpenAIPolicy":
        """From ``openai:<base_url>#<model>``; without ``#<model>`` the server's only model is used."""
        url, model = parse_spec(spec)
        if model is None:
            model = cls.served_models(url, api_key=kwargs.get("api_key"), timeout=kwargs.get("timeout", 60.0))
            if len(model) != 1:
                raise OpenAIBackendError(
                    f"{spec!r} names no model and the server at {url} serves {len(model)} "
                    f"({', '.join(model) or 'none'}): write openai:{url}#<model>", url)
            model = model[0]
        return cls(url, model, **kwargs)

    @staticmethod
    def served_models(base_url: str, api_key: str | None = None, timeout: float = 60.0) -> list[str]:
        """The model ids ``GET {base_url}/models`` lists."""
        import httpx

        base = base_url.rstrip("/")
        url = (base if base.endswith("/v1") else base + "/v1") + "/models"
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        try:
            resp = httpx.get(url, timeout=timeout, headers={"Authorization": f"Bearer {key}"} if key else {})
        except httpx.HTTPError as exc:
            raise OpenAIBackendError(f"cannot reach {url}: {exc!r}; is the server running at that address?",
                                     url) from exc
        if resp.status_code != 200:
            raise OpenAIBackendError(f"GET {url} returned HTTP {resp.status_code}: {_server_message(resp)}",
                                     url, resp.status_code)
        return [m["id"] for m in resp.json().get("data", [])]

    # ---- the Policy protocol ---------------------------------------------------------------------

    def generate(self, requests: Sequence[Request], sampling: SamplingParams | None = None) -> list[Generation]:
        """One chat completion per request, run concurrently; generations in request order."""
        coro = self.agenerate(requests, sampling)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside a running loop (a notebook, an async app): that loop cannot be blocked
        # on, so this call gets its own loop in a helper thread.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="openai-policy") as pool:
            return pool.submit(asyncio.run, coro).result()

    def __call__(self, requests: Sequence[Request], sampling: SamplingParams | None = None) -> list[Generation]:
        return self.generate(requests, sampling)

    async def agenerate(self, requests: Sequence[Request], sampling: SamplingParams | None = None
                        ) -> list[Generation]:
        """`generate` for async callers. The first request that fails for good cancels the rest."""
        import httpx

        sampling = sampling or SamplingParams()
        requests = list(requests)
        if not requests:
            return []
        bodies = [self._body(r, sampling, i) for i, r in enumerate(requests)]
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        gate = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), limits=limits, headers=headers) as client:
            tasks = [asyncio.ensure_future(self._complete(client, gate, b, sampling)) for b in bodies]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
            if failed:
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise failed[0].exception()  # type: ignore[misc]
            return [t.result() for t in tasks]

    # ---- one request -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _body(self, request: Request, sampling: SamplingParams, index: int) -> dict[str, Any]:
        greedy = sampling.greedy or sampling.temperature is None or sampling.temperature <= 0
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": chat_messages(request),
            "temperature": 0.0 if greedy else float(sampling.temperature),
            "max_tokens": int(sampling.max_new_tokens),
        }
        if not greedy and sampling.top_p is not None and sampling.top_p < 1.0:
            body["top_p"] = float(sampling.top_p)
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = int(sampling.seed) + index
        if self.logprobs:
            body["logprobs"] = True
        body.update(self.extra_body)
        return body

    async def _complete(self, client: Any, gate: asyncio.Semaphore, body: dict[str, Any],
                        sampling: SamplingParams) -> Generation:
        async with gate:
            for attempt in range(self.max_retries + 1):
                outcome = await self._attempt(client, body)
                if not isinstance(outcome, _Failure):
                    return _generation(outcome, sampling.stop)
                if not outcome.retry or attempt == self.max_retries:
                    tries = f" (after {attempt + 1} attempts)" if attempt else ""
                    raise OpenAIBackendError(outcome.message + tries, self.url, outcome.status)
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)
                if outcome.retry_after is not None:
                    delay = max(delay, min(outcome.retry_after, 60.0))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(self, client: Any, body: dict[str, Any]) -> dict[str, Any] | _Failure:
        """The response JSON, or what went wrong and whether to try again."""
        import httpx

        url = self.url
        try:
            resp = await client.post(url, json=body)
        except httpx.TimeoutException as exc:
            return _Failure(f"POST {url}: no answer within timeout={self.timeout}s ({type(exc).__name__}); the "
                            f"server may be overloaded or the generation too long: raise timeout= or lower "
                            f"concurrency", None, retry=True)
        except httpx.TransportError as exc:
            return _Failure(f"POST {url}: cannot connect ({exc!r}); is the server running and is the base URL "
                            f"right?", None, retry=True)
        status = resp.status_code
        if status == 200:
            try:
                data = resp.json()
                data["choices"][0]
            except (ValueError, KeyError, IndexError, TypeError):
                return _Failure(f"POST {url}: HTTP 200 but not a chat completion: {resp.text[:300]!r}; is "
                                f"{self.base_url} an OpenAI-compatible API?", status, retry=False)
            return data
        message = f"POST {url} returned HTTP {status}: {_server_message(resp)}; {_hint(status, self.model_name)}"
        retry = status == 429 or status >= 500
        return _Failure(message, status, retry, _retry_after(resp) if retry else None)


def _generation(data: dict[str, Any], stops: Sequence[str]) -> Generation:
    choice = data["choices"][0]
    text = (choice.get("message") or {}).get("content") or ""
    stop_reason = choice.get("stop_reason")
    if isinstance(stop_reason, str) and stop_reason in stops and not text.endswith(stop_reason):
        text += stop_reason  # the hf backend keeps the matched stop string
    entries = ((choice.get("logprobs") or {}).get("content")) or []
    logprobs = [float(e["logprob"]) for e in entries if e.get("logprob") is not None]
    ids = choice.get("token_ids")
    if ids is None and entries:
        if all("token_id" in e for e in entries):
            ids = [e["token_id"] for e in entries]
        else:
            found = [_TOKEN_ID.match(str(e.get("token", ""))) for e in entries]
            ids = [int(m.group(1)) for m in found] if all(found) else None
    return Generation(text=text, prompt_ids=[int(i) for i in data.get("prompt_token_ids") or []],
                      response_ids=[int(i) for i in ids or []], logprobs=logprobs,
                      truncated=choice.get("finish_reason") == "length")


def _server_message(resp: Any) -> str:
    """The error text of an OpenAI-style (``{"error": {"message"}}``) or other error response."""
    try:
        data = resp.json()
    except ValueError:
        return repr(resp.text[:300]) if resp.text else "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:500]
    return str(data)[:300]


def _hint(status: int, model: str) -> str:
    if status in (401, 403):
        return "check the API key (api_key= or $OPENAI_API_KEY)"
    if status == 404:
        return (f"check the base URL (the server root or its /v1) and the model name {model!r} "
                f"(GET <base_url>/models lists the served ones)")
    if status == 429:
        return "the server is rate limiting: lower concurrency or wait"
    if status >= 500:
        return "the server failed; see its log"
    return f"check the request options and the model name {model!r}"


def _retry_after(resp: Any) -> float | None:
    try:
        return max(0.0, float(resp.headers.get("retry-after", "")))
    except ValueError:
        return None
