"""The `hf` policy backend: transformers models on CPU or GPU.

`HFPolicy.generate` runs its own sampling loop over the KV cache (not `model.generate`) so that it
controls per-sequence stopping (EOS or stop strings) and records the policy's own log-probs: the
log-softmax of the temperature-1 logits of the rollout weights at each chosen token, whatever
temperature / top-p was used for sampling. `agents.forward.sequence_logprobs` recomputes exactly those
log-probs for given prompt/response ids (the trainer's old log-probs and loss); the two agree to
float rounding (about 1e-6 in float32). Opening a model folder or `.gguf` file is agents/model_files.py.

Qwen2-VL / Qwen2.5-VL folders load as VLM policies (`agents.vlm`): chats carry images as content
parts (or `Request.images`), prompt ids hold the expanded image pad tokens, the first forward gets
the pixel inputs and M-RoPE positions, and `sequence_logprobs` takes the same pixel inputs
(``pixel_values`` / ``image_grid_thw`` of the batch's rows, concatenated in row order).

Conventions:
- Prompts are the chat template applied with ``add_generation_prompt=True`` and encoded without
  extra special tokens (templates carry their own BOS where a model needs one).
- ``Generation.response_ids`` include the EOS token when one was produced; ``logprobs`` has one entry
  per response id.
- Stop strings: generation stops at the first token whose decoded text completes a stop string;
  ``text`` is cut right after the stop string (which is kept), ``response_ids`` end with that token
  (so ``decode(response_ids)`` starts with ``text`` and may only extend past it by the rest of
  that last token).
- ``text`` is decoded with special tokens skipped (the EOS never appears in it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from .forward import (adapter_autocast, base_model, cache_kwarg, left_pad, new_cache, sequence_logprobs, suppress_tokens,
                      suppressed_token_ids)
from .model_files import (ChatTemplateError, UnsupportedModelError, gguf_support, missing_chat_template_message,
                          resolve_chat_template, resolve_dtype, resolve_model_path, set_chat_template)
from .policy import Generation, Request, SamplingParams

__all__ = ["HFPolicy", "sequence_logprobs", "resolve_model_path", "resolve_chat_template", "ChatTemplateError",
           "UnsupportedModelError"]




# --------------------------------------------------------------------------------------------
# the policy


class HFPolicy:
    """Policy backend on a transformers causal LM (see the module docstring for conventions).

    ``model_or_path``: a loaded model (then pass `tokenizer`, or it is loaded from the model's
    ``name_or_path``) or a path, any that `resolve_model_path` accepts: a model folder with
    config.json, a .gguf file, a folder plus ``gguf_file=``, or a folder holding one .gguf file.
    ``chat_template``: empty = the tokenizer's own; ``chatml`` or the path of a Jinja file (see
    `resolve_chat_template`). A path's tokenizer loads before its weights, so a tokenizer without a
    template (and none given) raises ChatTemplateError without the weight load.
    ``max_prompt_tokens`` keeps only the last N prompt tokens when set.
    """

    needs_expert_action = False

    def __init__(
        self,
        model_or_path: Any,
        tokenizer: Any = None,
        device: str = "cpu",
        dtype: Any = None,
        gguf_file: str | None = None,
        max_prompt_tokens: int | None = None,
        batch_size: int = 64,
        processor: Any = None,
        chat_template: str | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from . import vlm

        resolve_chat_template(chat_template)  # an unknown name or a missing file fails before anything loads
        if isinstance(model_or_path, (str, os.PathLike)):
            folder, gguf = resolve_model_path(model_or_path, gguf_file)
        if isinstance(model_or_path, (str, os.PathLike)) and gguf is None and vlm.is_vlm_folder(folder):
            model, loaded = vlm.load_vlm(folder, dtype=resolve_dtype(dtype, device), device=device)
            processor = processor or loaded
            tokenizer = tokenizer or processor.tokenizer
            set_chat_template(tokenizer, chat_template, folder, processor)
        elif isinstance(model_or_path, (str, os.PathLike)):
            # The tokenizer loads first: a missing chat template is reported before the weights load.
            if tokenizer is None:
                with gguf_support(folder, gguf):
                    tokenizer = AutoTokenizer.from_pretrained(str(folder), **({"gguf_file": gguf} if gguf else {}))
            elif isinstance(tokenizer, (str, os.PathLike)):
                tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
            set_chat_template(tokenizer, chat_template, folder / gguf if gguf else folder)
            kw: dict[str, Any] = {"dtype": resolve_dtype(dtype, device)}
            if gguf is not None:
                kw["gguf_file"] = gguf
            with gguf_support(folder, gguf):
                model = AutoModelForCausalLM.from_pretrained(str(folder), **kw)
            if gguf is not None:
                # transformers dequantizes GGUF weights into plain tensors at load; the quantizer it
                # leaves attached would only make save_pretrained (checkpoints, final model) refuse.
                model.hf_quantizer = None
                if getattr(model.config, "quantization_config", None) is not None:
                    del model.config.quantization_config
            model.to(device)
            model.eval()
        else:
            model = model_or_path
            if dtype is not None:
                model.to(resolve_dtype(dtype, device))
            name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
            if processor is None and getattr(base_model(model).config, "model_type", None) in vlm.VL_MODEL_TYPES:
                if not name or not Path(str(name)).exists():
                    raise ValueError("HFPolicy: pass processor= (agents.vlm.load_processor) when giving a VLM "
                                     "object without a local name_or_path")
                processor = vlm.load_processor(name)
            if tokenizer is None and processor is not None:
                tokenizer = processor.tokenizer
            if tokenizer is None:
                if not name or not Path(str(name)).exists():
                    raise ValueError("HFPolicy: pass tokenizer= when giving a model object without a local name_or_path")
                tokenizer = AutoTokenizer.from_pretrained(str(name))
            if isinstance(tokenizer, (str, os.PathLike)):
                tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
            if chat_template:
                set_chat_template(tokenizer, chat_template, name, processor)

        self.model = model
        self.tokenizer = tokenizer
        #: The VLM's processor (`agents.vlm.VLProcessor`); None for text models.
        self.processor = processor
        self.device = next(model.parameters()).device
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_size = int(batch_size)
        self.eos_token_ids = self._find_eos_ids()
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = self.eos_token_ids[0]
        self.pad_token_id = int(pad)
        self._cache_kw = cache_kwarg(model)
        self._suppressed = suppressed_token_ids(model)

    # ---- helpers -----------------------------------------------------------------------------

    def _find_eos_ids(self) -> list[int]:
        ids: list[int] = []

        def add(x):
            if x is None:
                return
            for v in x if isinstance(x, (list, tuple)) else [x]:
                if v is not None and int(v) >= 0 and int(v) not in ids:
                    ids.append(int(v))

        add(self.tokenizer.eos_token_id)
        vocab = self.tokenizer.get_vocab()
        if "<|im_end|>" in vocab:
            add(vocab["<|im_end|>"])
        gen_cfg = getattr(self.model, "generation_config", None)
        if gen_cfg is not None:
            add(getattr(gen_cfg, "eos_token_id", None))
        if not ids:
            raise ValueError("HFPolicy: the tokenizer defines no EOS token")
        return ids

    def encode_prompt(self, request: Request) -> list[int]:
        """Token ids of the chat template applied to the request (with the generation prompt)."""
        return self.encode_prompts([request])[0]

    @property
    def is_vlm(self) -> bool:
        return self.processor is not None

    def encode_prompts(self, requests: Sequence[Request]) -> list[list[int]]:
        if self.is_vlm:
            return self.encode_requests(requests)[0]
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ChatTemplateError(missing_chat_template_message(
                getattr(self.tokenizer, "name_or_path", None) or "the policy"))
        texts = [
            self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in requests
        ]
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        out = [list(e) for e in enc]
        if self.max_prompt_tokens is not None:
            out = [e[-self.max_prompt_tokens :] if len(e) > self.max_prompt_tokens else e for e in out]
        return out

    def encode_requests(self, requests: Sequence[Request]) -> tuple[list[list[int]], list[dict[str, torch.Tensor]]]:
        """(prompt ids, pixel inputs) per request; pixel inputs are {} for text rows and text models.

        A VLM's prompt ids hold each image's pad tokens expanded to its patch count. Images come from
        the chat's image parts, or from `Request.images` (put before the last message's text) when
        the chat has none.
        """
        if not self.is_vlm:
            return self.encode_prompts(requests), [{} for _ in requests]
        from .vlm import encode_chat

        prompts, pixels = [], []
        for r in requests:
            ids, mm = encode_chat(self.processor, _chat_with_images(r))
            if self.max_prompt_tokens is not None and len(ids) > self.max_prompt_tokens:
                cut = len(ids) - self.max_prompt_tokens
                if mm and base_model(self.model).config.image_token_id in ids[:cut]:
                    raise ValueError(
                        f"HFPolicy: a prompt of {len(ids)} tokens exceeds max_prompt_tokens={self.max_prompt_tokens} "
                        "and cutting it would drop image tokens; raise max_prompt_tokens or carry fewer frames "
                        "(env.image_history)")
                ids = ids[cut:]
            prompts.append(ids)
            pixels.append(mm)
        return prompts, pixels

    def _forward(self, ids, attn, pos, cache, keep_last: bool = True, **extra):
        kw = {self._cache_kw: cache}
        out = self.model(
            input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1 if keep_last else 0,
            **kw, **extra
        )
        return suppress_tokens(out.logits[:, -1, :].float(), self._suppressed)

    # ---- the Policy protocol ---------------------------------------------------------------------

    def generate(self, requests: Sequence[Request], sampling: SamplingParams | None = None) -> list[Generation]:
        sampling = sampling or SamplingParams()
        requests = list(requests)
        if not requests:
            return []
        prompts, pixels = self.encode_requests(requests)
        gen = torch.Generator(device=self.device)
        if sampling.seed is not None:
            gen.manual_seed(int(sampling.seed))
        else:
            gen.seed()
        results: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            results.extend(self.generate_from_ids(prompts[chunk], sampling, gen, pixel_inputs=pixels[chunk]))
        for g, mm in zip(results, pixels):  # training feeds these back: the images are processed once
            g.pixel_inputs = mm
        return results

    def __call__(self, requests, sampling=None):
        return self.generate(requests, sampling)

    def generate_from_ids(
        self,
        prompts: Sequence[Sequence[int]],
        sampling: SamplingParams,
        generator: torch.Generator | None = None,
        pixel_inputs: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> list[Generation]:
        """Sample continuations of already-encoded prompts (one batch; no chunking).

        `pixel_inputs`: per prompt, the pixel inputs of its images ({} for none), as
        `encode_requests` returns them. The model runs in eval mode under `torch.inference_mode`
        (its training flag is restored after).
        """
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), adapter_autocast(self.model):
                return self._generate_batch(prompts, sampling, generator, pixel_inputs)
        finally:
            self.model.train(was_training)

    def _generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        sampling: SamplingParams,
        generator: torch.Generator | None,
        pixel_inputs: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> list[Generation]:
        if generator is None:
            generator = torch.Generator(device=self.device)
            if sampling.seed is not None:
                generator.manual_seed(int(sampling.seed))
            else:
                generator.seed()
        B = len(prompts)
        if B == 0:
            return []
        if any(len(p) == 0 for p in prompts):
            raise ValueError("HFPolicy: empty prompt")
        max_new = int(sampling.max_new_tokens)
        prompts = [list(map(int, p)) for p in prompts]
        if max_new <= 0:
            return [Generation(text="", prompt_ids=p, truncated=True) for p in prompts]
        greedy = bool(sampling.greedy) or sampling.temperature is None or float(sampling.temperature) <= 0.0
        temperature = float(sampling.temperature) if not greedy else 1.0
        top_p = float(sampling.top_p) if sampling.top_p is not None else 1.0
        stops = tuple(s for s in (sampling.stop or ()) if s)
        dev = self.device
        tok = self.tokenizer
        eos = torch.as_tensor(self.eos_token_ids, device=dev)

        ids, attn_prompt = left_pad(prompts, self.pad_token_id, dev)
        L = ids.shape[1]
        # Preallocated attention mask over prompt + generated tokens; sliced per step.
        attn = torch.zeros((B, L + max_new), dtype=torch.long, device=dev)
        attn[:, :L] = attn_prompt
        pos = (attn_prompt.cumsum(-1) - 1).clamp(min=0)
        next_pos = attn_prompt.sum(-1)  # [B] position of the next token per row
        first_extra: dict[str, Any] = {}
        mrope = False  # VLM rows with images: M-RoPE positions, the same for all 3 sections after the prompt
        if pixel_inputs is not None and any(pixel_inputs):
            from .vlm import concat_pixel_inputs, mrope_position_ids

            first_extra = {k: v.to(dev) for k, v in concat_pixel_inputs(pixel_inputs).items()}
            pos, next_pos = mrope_position_ids(self.model, ids, attn_prompt, first_extra["image_grid_thw"])
            mrope = True

        resp: list[list[int]] = [[] for _ in range(B)]
        resp_lp: list[list[float]] = [[] for _ in range(B)]
        finish = ["length"] * B  # "eos" | "stop" | "length"
        stop_text: dict[int, str] = {}

        cache = new_cache(self.model)
        logits = self._forward(ids, attn[:, :L], pos, cache, **first_extra)
        active_list = list(range(B))  # original row index of each row still in the batch

        for t in range(max_new):
            logsm = torch.log_softmax(logits, dim=-1)
            if greedy:
                nxt = logits.argmax(-1)
            else:
                nxt = self._sample(logits, temperature, top_p, generator)
            lp = logsm.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
            done_list = torch.isin(nxt, eos).tolist()
            for r, tk, l, d in zip(active_list, nxt.tolist(), lp.tolist(), done_list):
                resp[r].append(tk)
                resp_lp[r].append(l)
                if d:
                    finish[r] = "eos"
            if stops:
                check = [j for j, r in enumerate(active_list) if not done_list[j]]
                if check:
                    texts = tok.batch_decode([resp[active_list[j]] for j in check], skip_special_tokens=True)
                    for j, text in zip(check, texts):
                        cut = _first_stop(text, stops)
                        if cut is not None:
                            r = active_list[j]
                            finish[r] = "stop"
                            stop_text[r] = text[:cut]
                            done_list[j] = True
            if t == max_new - 1:
                break
            keep = [j for j, d in enumerate(done_list) if not d]
            if not keep:
                break
            if len(keep) < len(active_list):
                sel = torch.as_tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                attn = attn[sel]
                next_pos = next_pos[sel]
                nxt = nxt[sel]
                active_list = [active_list[j] for j in keep]
            attn[:, L + t] = 1
            step_pos = next_pos.unsqueeze(1)
            if mrope:
                step_pos = step_pos.unsqueeze(0).expand(3, -1, -1)
            logits = self._forward(nxt.unsqueeze(1), attn[:, : L + t + 1], step_pos, cache)
            next_pos = next_pos + 1

        results = []
        for r in range(B):
            text = stop_text[r] if finish[r] == "stop" else tok.decode(resp[r], skip_special_tokens=True)
            results.append(
                Generation(
                    text=text,
                    prompt_ids=prompts[r],
                    response_ids=resp[r],
                    logprobs=resp_lp[r],
                    truncated=finish[r] == "length",
                )
            )
        return results

    @staticmethod
    def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
        scaled = logits / temperature if temperature != 1.0 else logits
        probs = torch.softmax(scaled, dim=-1)
        if top_p < 1.0:
            sp, si = probs.sort(dim=-1, descending=True)
            cum = sp.cumsum(-1)
            sp = sp.masked_fill(cum - sp > top_p, 0.0)  # keep the smallest prefix with mass >= top_p
            choice = torch.multinomial(sp, 1, generator=generator)
            return si.gather(-1, choice).squeeze(-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    # ---- training support ---------------------------------------------------------------------

    def logprobs(
        self,
        prompt_ids_list: Sequence[Sequence[int]],
        response_ids_list: Sequence[Sequence[int]],
        batch_size: int | None = None,
        pixel_inputs: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> list[torch.Tensor]:
        """Per-token log-probs (1-D tensor per sample) of each response under the current weights.

        Batches rows of similar length together; keeps gradients when grad is enabled.
        `pixel_inputs`: per row, the pixel inputs of its prompt's images (VLMs; {} for none).
        """
        n = len(prompt_ids_list)
        bs = int(batch_size or self.batch_size)
        order = sorted(range(n), key=lambda i: -(len(prompt_ids_list[i]) + len(response_ids_list[i])))
        out: list[torch.Tensor | None] = [None] * n
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            logp, _, _ = sequence_logprobs(
                self.model,
                [prompt_ids_list[i] for i in idx],
                [response_ids_list[i] for i in idx],
                self.pad_token_id,
                **_batch_pixels(pixel_inputs, idx),
            )
            for k, i in enumerate(idx):
                out[i] = logp[k, : len(response_ids_list[i])]
        return out  # type: ignore[return-value]

    def answer_logprobs(
        self,
        requests: Sequence[Request],
        prefixes: Sequence[str],
        answers: Sequence[str],
        suffixes: Sequence[str],
    ) -> list[float]:
        """Mean log-prob of each answer's tokens, teacher-forced after its prompt and prefix.

        Row i is ``encode_prompt(requests[i]) + ids(prefixes[i]) + ids(answers[i]) + ids(suffixes[i])``
        with the three texts tokenised separately, so the answer span is exact (a joint encoding
        could merge tokens across the boundaries). Only the answer tokens are averaged; the suffix
        cannot change them (causal model) and is there so the row reads like a finished turn. This is
        the IGPO ground-truth probe (algorithms.md §4.1). An empty answer gives NaN. Runs in eval
        mode under no_grad with the current weights, in batches of `batch_size` similar-length rows.
        """
        n = len(requests)
        if not n == len(prefixes) == len(answers) == len(suffixes):
            raise ValueError("answer_logprobs: requests, prefixes, answers and suffixes differ in length")
        if n == 0:
            return []

        def enc(texts: Sequence[str]) -> list[list[int]]:
            return [list(e) for e in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

        prompts, pixels = self.encode_requests(requests)
        pre, ans, suf = enc(prefixes), enc(answers), enc(suffixes)
        conts = [p + a + s for p, a, s in zip(pre, ans, suf)]
        order = sorted(range(n), key=lambda i: -(len(prompts[i]) + len(conts[i])))
        out = [float("nan")] * n
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    logp, _, _ = sequence_logprobs(
                        self.model, [prompts[i] for i in idx], [conts[i] for i in idx], self.pad_token_id,
                        **_batch_pixels(pixels, idx),
                    )
                    for k, i in enumerate(idx):
                        lo, hi = len(pre[i]), len(pre[i]) + len(ans[i])
                        if hi > lo:
                            out[i] = float(logp[k, lo:hi].mean())
        finally:
            self.model.train(was_training)
        return out


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """End index (exclusive) of the earliest stop string occurrence in `text`, or None."""
    best = None
    for s in stops:
        i = text.find(s)
        if i >= 0:
            end = i + len(s)
            if best is None or i < best[0] or (i == best[0] and end < best[1]):
                best = (i, end)
    return None if best is None else best[1]


def _batch_pixels(pixel_inputs: Sequence[dict[str, torch.Tensor]] | None, idx: Sequence[int]) -> dict[str, Any]:
    """`sequence_logprobs` keyword arguments for the rows `idx` ({} when none has images)."""
    if not pixel_inputs:
        return {}
    from .vlm import concat_pixel_inputs

    return concat_pixel_inputs([pixel_inputs[i] for i in idx])


def _chat_with_images(request: Request) -> list[dict[str, Any]]:
    """The request's chat; `Request.images` not already in it go before the last message's text."""
    from .vlm import has_images, image_parts

    messages = list(request.messages)
    if not request.images or has_images(messages) or not messages:
        return messages
    last = dict(messages[-1])
    content = last.get("content")
    parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
    last["content"] = image_parts(request.images) + list(parts)
    return messages[:-1] + [last]
