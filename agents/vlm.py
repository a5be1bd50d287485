"""Qwen2-VL-family support for the `hf` backend, without torchvision.

On these machines torchvision cannot be imported, so transformers falls back to its PIL image
processor (`Qwen2VLImageProcessorPil`) and the stock `Qwen2VLProcessor`, which also wants a video
processor (torchvision-only), cannot be built. `VLProcessor` is that processor restricted to the
image processor and the tokenizer. `qwen_vl_utils` is used for image sizing only where it imports
(it imports torchvision at import time); transformers' own `smart_resize` is the fallback.

Chats carry images as content parts, in the order the model sees them:

    {"role": "user", "content": [{"type": "image", "image": <HxWx3 uint8 array>},
                                 {"type": "text", "text": "..."}]}

`encode_chat` turns such a chat into prompt ids in which each image's ``<|image_pad|>`` is already
expanded to its patch count (so rollout prompt ids are exactly what training sees) plus the pixel
inputs of the forward pass (``pixel_values``, ``image_grid_thw``). The same images always give the
same pixel inputs, so the trainer recomputes them from the recorded chat.

`build_tiny_vlm` / `ensure_tiny_vlm` build a randomly initialised `Qwen2VLForConditionalGeneration`
or (``arch="qwen2_5_vl"``) `Qwen2_5_VLForConditionalGeneration` with tiny dimensions (the real
architecture: vision tower, patch merger, M-RoPE; for Qwen2.5-VL also window attention in the vision
blocks, RMSNorm and gated MLPs) and a tokenizer trained locally as in `agents.tiny`, plus the vision
special tokens. Both families share the image processor, the placeholder tokens, `get_rope_index`
and the ``visual`` module name, so everything else here serves them alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from agents import tiny

if TYPE_CHECKING:
    import torch

__all__ = [
    "VL_MODEL_TYPES",
    "VL_CHAT_TEMPLATE",
    "VLProcessor",
    "is_vlm_folder",
    "load_vlm",
    "load_processor",
    "image_parts",
    "chat_images",
    "has_images",
    "to_pil",
    "vision_size",
    "encode_chat",
    "concat_pixel_inputs",
    "mrope_position_ids",
    "vision_parameters",
    "freeze_vision_tower",
    "build_tiny_vlm",
    "ensure_tiny_vlm",
]

#: `config.json` model types served by this module.
VL_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_TOKENS = (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

#: ChatML with Qwen2-VL's image placeholders; content is a string or a list of text / image parts.
VL_CHAT_TEMPLATE = tiny.chatml_template(VISION_START + IMAGE_PAD + VISION_END)


# --------------------------------------------------------------------------------------------
# the processor


_PROCESSOR_CLASS = None


def _processor_class():
    """`VLProcessor`, defined on first use so that importing this module stays light."""
    global _PROCESSOR_CLASS
    if _PROCESSOR_CLASS is None:
        from transformers import Qwen2VLProcessor

        class VLProcessor(Qwen2VLProcessor):
            """`Qwen2VLProcessor` with only an image processor and a tokenizer (no video processor).

            The stock class lists a video processor, which needs torchvision; images and text are all
            an agent chat holds, and the image path is the stock one (pad expansion, token types).
            """

            def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
                super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                                 chat_template=chat_template, **kwargs)

        VLProcessor.__module__ = __name__
        _PROCESSOR_CLASS = VLProcessor
    return _PROCESSOR_CLASS


def __getattr__(name: str) -> Any:
    if name == "VLProcessor":
        return _processor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_vlm_folder(path: Any) -> bool:
    """True when `path` is a model folder whose config names a Qwen2-VL-family model."""
    try:
        cfg = json.loads((Path(os.path.expanduser(str(path))) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return cfg.get("model_type") in VL_MODEL_TYPES


def load_processor(folder: Any) -> Any:
    """The image processor (PIL backend) and tokenizer saved in `folder`, as one `VLProcessor`."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = str(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    try:
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"{folder!r} holds a Qwen2-VL-family model but no image processor config (preprocessor_config.json or "
            f"processor_config.json); save the processor next to the model") from exc
    chat_template = getattr(tokenizer, "chat_template", None)
    if chat_template is None:
        path = Path(folder) / "chat_template.json"
        if path.is_file():
            chat_template = json.loads(path.read_text()).get("chat_template")
        if chat_template is None and (Path(folder) / "chat_template.jinja").is_file():
            chat_template = (Path(folder) / "chat_template.jinja").read_text()
        tokenizer.chat_template = chat_template
    return _processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


def load_vlm(folder: Any, dtype: Any = None, device: str = "cpu") -> tuple[torch.nn.Module, Any]:
    """(model, `VLProcessor`) of a Qwen2-VL / Qwen2.5-VL folder; the model (float32 unless `dtype`) in
    eval mode on `device`."""
    import torch
    from transformers import AutoConfig

    dtype = torch.float32 if dtype is None else dtype

    config = AutoConfig.from_pretrained(str(folder))
    if config.model_type not in VL_MODEL_TYPES:
        raise ValueError(f"{str(folder)!r} is a {config.model_type!r} model, not one of {VL_MODEL_TYPES}")
    model = _vl_classes(config.model_type)[1].from_pretrained(str(folder), dtype=dtype)
    model.to(device).eval()
    return model, load_processor(folder)


def _vl_classes(model_type: str) -> tuple[type, type]:
    """(config class, ForConditionalGeneration class) of a `VL_MODEL_TYPES` model type."""
    if model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    if model_type == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        return Qwen2VLConfig, Qwen2VLForConditionalGeneration
    raise ValueError(f"unknown VLM model type {model_type!r}; expected one of {VL_MODEL_TYPES}")


# --------------------------------------------------------------------------------------------
# chats with images


def image_parts(images: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"type": "image", "image": im} for im in images]


def chat_images(messages: Sequence[dict[str, Any]]) -> list[Any]:
    """The images of a chat's content parts, in order (empty for text-only chats)."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            out.extend(p["image"] for p in content if isinstance(p, dict) and p.get("type") == "image"
                       and p.get("image") is not None)
    return out


def has_images(messages: Sequence[dict[str, Any]]) -> bool:
    return any(isinstance(m.get("content"), list) and any(
        isinstance(p, dict) and p.get("type") == "image" for p in m["content"]) for m in messages)


def to_pil(image: Any):
    """An RGB PIL image from a PIL image or an HxWx3 (or HxW) uint8 array / nested list."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"an image must be HxWx3 (RGB uint8); got an array of shape {arr.shape}")
    return Image.fromarray(arr[..., :3])


def vision_size(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """(height, width) an image is resized to: multiples of `factor` within the pixel budget.

    `qwen_vl_utils.smart_resize` where that package imports, else transformers' copy of the rule.
    """
    try:
        from qwen_vl_utils import smart_resize  # imports torchvision; absent or broken here
    except Exception:  # noqa: BLE001 - ImportError, or torchvision's own failure at import
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
    return tuple(smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels))


def encode_chat(processor: Any, messages: Sequence[dict[str, Any]]) -> tuple[list[int], dict[str, torch.Tensor]]:
    """Prompt ids (image pads expanded) and pixel inputs of one chat, with the generation prompt.

    The pixel inputs are ``{"pixel_values": [patches, dim], "image_grid_thw": [images, 3]}``, or
    ``{}`` for a chat without images.
    """
    text = processor.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    images = [to_pil(im) for im in chat_images(messages)]
    if not images:
        ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(ids), {}
    enc = processor(text=[text], images=images, return_tensors="pt", add_special_tokens=False)
    ids = enc["input_ids"][0].tolist()
    return ids, {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}


def concat_pixel_inputs(items: Sequence[dict[str, torch.Tensor] | None]) -> dict[str, torch.Tensor]:
    """One batch's pixel inputs: rows' pixel_values and grids concatenated in row order ({} if none)."""
    import torch

    items = [x for x in items if x]
    if not items:
        return {}
    return {"pixel_values": torch.cat([x["pixel_values"] for x in items]),
            "image_grid_thw": torch.cat([x["image_grid_thw"] for x in items])}


def _vl_core(model):
    """(ForConditionalGeneration, its inner `Qwen2VLModel` / `Qwen2_5_VLModel`), through peft wrappers."""
    base = model
    get = getattr(base, "get_base_model", None)
    if callable(get):
        base = get()
    core = getattr(base, "model", None)
    if core is None or not hasattr(core, "get_rope_index"):
        raise TypeError(f"{type(base).__name__} is not a Qwen2-VL-family model (no get_rope_index)")
    return base, core


def mrope_position_ids(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       image_grid_thw: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """M-RoPE positions ``[3, B, L]`` of (padded) rows and, per row, the next text position ``[B]``.

    Text tokens count up by one; an image's tokens take (t, h, w) grid positions and advance the
    count by the image's longer side, so a decoded token after row b sits at ``next[b] + k``.
    """
    base, core = _vl_core(model)
    image_token_id = base.config.image_token_id
    mm = (input_ids == image_token_id).int()
    if image_grid_thw is not None:
        image_grid_thw = image_grid_thw.to(input_ids.device)
    pos, deltas = core.get_rope_index(input_ids, mm_token_type_ids=mm, image_grid_thw=image_grid_thw,
                                      attention_mask=attention_mask)
    nxt = attention_mask.sum(-1) + deltas.view(-1).to(attention_mask.device)
    return pos, nxt


def vision_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of the vision tower (the patch embedding, blocks and merger)."""
    return [(n, p) for n, p in model.named_parameters() if ".visual." in f".{n}"]


def freeze_vision_tower(model, frozen: bool = True) -> int:
    """Stop (or restart) gradient flow into the vision tower; returns how many tensors it touched.

    Call before building the optimizer: the trainer only optimizes parameters that require grad.
    """
    params = vision_parameters(model)
    if not params:
        raise ValueError(f"{type(model).__name__} has no vision tower (no '.visual.' parameters) to freeze")
    for _, p in params:
        p.requires_grad_(not frozen)
    return len(params)


# --------------------------------------------------------------------------------------------
# the tiny VLM


_VLM_FORMAT = 1
_DEFAULTS = dict(
    vocab_size=1024, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=384,
    max_position_embeddings=4096, vision_depth=2, vision_embed_dim=64, vision_heads=4, vision_mlp_ratio=2,
    patch_size=14, max_pixels=28 * 28 * 64, seed=0, arch="qwen2_vl",
)


def build_tiny_vlm(out_dir: Any, texts: Iterable[str], **params: Any) -> Path:
    """Train a tokenizer on `texts`, build a random tiny Qwen2-VL-family model, save both.

    The folder holds the model, the tokenizer (Qwen2 pre-tokenizer, ChatML with image placeholders,
    the vision special tokens), the PIL image processor config and a marker file; `load_vlm` and
    `HFPolicy(folder)` reopen it. Options (defaults in `_DEFAULTS`): `arch` (``"qwen2_vl"`` or
    ``"qwen2_5_vl"``), text dims as `agents.tiny`, the vision tower's depth / width / heads / MLP ratio,
    the patch size (merge 2x2, temporal patch 2 as in both families) and the image pixel budget
    `max_pixels`. A Qwen2.5-VL tower attends within windows of 2x2 merged patches (56 px at patch 14;
    the released models use 4x4, too big to split the tiny images here) in every block but the
    last, which attends over the whole image.
    """
    p = _options(params)
    texts, digest = tiny._texts_and_hash(texts, {"vlm_format": _VLM_FORMAT, **p})
    return _build(Path(out_dir), texts, p, digest)


def ensure_tiny_vlm(out_dir: Any, texts: Iterable[str], **params: Any) -> Path:
    """`out_dir`, building the tiny VLM there unless an identical build (same corpus and options) exists."""
    p = _options(params)
    texts, digest = tiny._texts_and_hash(texts, {"vlm_format": _VLM_FORMAT, **p})
    out = Path(out_dir)
    if tiny._marker_hash(out) == digest and tiny.is_model_dir(out):
        return out
    return _build(out, texts, p, digest)


def _options(params: dict[str, Any]) -> dict[str, Any]:
    """The build options: `_DEFAULTS` overridden by `params`, checked."""
    unknown = set(params) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown tiny-VLM options: {sorted(unknown)}; valid: {sorted(_DEFAULTS)}")
    p = {**_DEFAULTS, **params}
    if p["arch"] not in VL_MODEL_TYPES:
        raise ValueError(f"arch must be one of {VL_MODEL_TYPES}; got {p['arch']!r}")
    return p


def _vision_config(p: dict[str, Any]) -> dict[str, Any]:
    """The vision tower's config fields for `p["arch"]` (the two families name their widths differently)."""
    common = dict(depth=p["vision_depth"], num_heads=p["vision_heads"], patch_size=p["patch_size"],
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    if p["arch"] == "qwen2_vl":
        return dict(common, embed_dim=p["vision_embed_dim"], hidden_size=p["hidden_size"],
                    mlp_ratio=p["vision_mlp_ratio"])
    # Qwen2.5-VL: `hidden_size` is the tower's own width and `out_hidden_size` the merger's output
    # (the text width); window attention everywhere except the full-attention blocks.
    return dict(common, hidden_size=p["vision_embed_dim"], out_hidden_size=p["hidden_size"],
                intermediate_size=p["vision_embed_dim"] * p["vision_mlp_ratio"],
                window_size=p["patch_size"] * 2 * 2, fullatt_block_indexes=[p["vision_depth"] - 1])


def _build(out_dir: Path, texts: list[str], p: dict, digest: str) -> Path:
    import torch
    from tokenizers import AddedToken
    from transformers import GenerationConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if out_dir.exists() and not (out_dir / tiny.MARKER_FILE).is_file() and (
            not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{str(out_dir)!r} exists and is not a tiny-model build (no {tiny.MARKER_FILE}); "
                              "refusing to replace it")
    if not texts:
        raise ValueError("build_tiny_vlm needs a non-empty corpus of texts to train the tokenizer")
    head_dim = p["hidden_size"] // p["num_heads"]
    if p["hidden_size"] % p["num_heads"] or p["num_heads"] % p["num_kv_heads"] or head_dim % 4:
        raise ValueError("hidden_size must be divisible by num_heads (head dim a multiple of 4), "
                         "and num_heads by num_kv_heads")
    if p["vision_embed_dim"] % p["vision_heads"]:
        raise ValueError("vision_embed_dim must be divisible by vision_heads")

    tok = tiny.train_tokenizer(texts, p["vocab_size"] - len(VISION_TOKENS))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in VISION_TOKENS])
    hf_tok = tiny._hf_tokenizer(tok, p["max_position_embeddings"])
    hf_tok.chat_template = VL_CHAT_TEMPLATE
    ids = {t: tok.token_to_id(t) for t in (*tiny.SPECIAL_TOKENS, *VISION_TOKENS)}
    eos_id, pad_id = ids[tiny.IM_END], ids[tiny.ENDOFTEXT]

    # M-RoPE splits the head's rotary frequencies into temporal / height / width sections (1:1.5:1.5 in
    # both families).
    half = head_dim // 2
    t_sec = half // 4
    hw = half - t_sec
    mrope = [t_sec, hw // 2, hw - hw // 2]
    config_cls, model_cls = _vl_classes(p["arch"])
    config = config_cls(
        text_config=dict(
            vocab_size=tok.get_vocab_size(with_added_tokens=True), hidden_size=p["hidden_size"],
            intermediate_size=p["intermediate_size"], num_hidden_layers=p["num_layers"],
            num_attention_heads=p["num_heads"], num_key_value_heads=p["num_kv_heads"],
            max_position_embeddings=p["max_position_embeddings"], use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope},
            bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id, tie_word_embeddings=True,
        ),
        vision_config=_vision_config(p),
        image_token_id=ids[IMAGE_PAD], video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START], vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=True, bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p["seed"])
        model = model_cls(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(bos_token_id=pad_id, eos_token_id=[eos_id, pad_id],
                                               pad_token_id=pad_id, do_sample=True, temperature=1.0, top_p=1.0)
    factor = p["patch_size"] * 2
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=p["patch_size"], merge_size=2, temporal_patch_size=2,
        size={"shortest_edge": factor * factor, "longest_edge": p["max_pixels"]})

    marker = {"hash": digest, "params": p, "n_texts": len(texts), "format": _VLM_FORMAT, "kind": "vlm"}
    return tiny._save_build(out_dir, [model, hf_tok, image_processor], marker)
