"""Load any causal LM (local directory or hub id) and check its chat template can train agents."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from trl.chat_template_utils import get_training_chat_template

from trajectories.device import default_dtype, resolve_device
from trajectories.jsonl import InputError


class ModelInputError(InputError):
    """A model or tokenizer the audit cannot use; the message is one line saying what is wrong."""


_HUB_HINT = (
    " (a hub id needs huggingface.co or a cached copy; offline, pass a local directory"
    " written by save_pretrained)"
)
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

# Distinct sentinels show which part of a tool-calling conversation a template drops.
_CALLED_TOOL = "audit_probe_lookup"
_UNUSED_TOOL = "audit_probe_unused"
_ARG_VALUE = "audit_probe_value"
_RESULT = "audit_probe_result"


def _probe_tool(name: str) -> dict[str, Any]:
    """An OpenAI-format tool schema with one string parameter."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "Probe tool.",
            "parameters": {
                "type": "object",
                "properties": {"key": {"type": "string", "description": "Probe argument."}},
                "required": ["key"],
            },
        },
    }


def _probe_messages(arguments: dict[str, str] | str) -> list[dict[str, Any]]:
    """User, assistant tool call, tool result, final assistant answer."""
    call = {"type": "function", "function": {"name": _CALLED_TOOL, "arguments": arguments}}
    return [
        {"role": "user", "content": "Look up the key."},
        {"role": "assistant", "content": "Checking.", "tool_calls": [call]},
        {"role": "tool", "name": _CALLED_TOOL, "content": _RESULT},
        {"role": "assistant", "content": "Found it."},
    ]


def validate_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise `ModelInputError` naming everything the tokenizer's chat template lacks.

    Renders a probe conversation (tool schemas, a tool call, a tool result, a final answer) and
    requires the schemas, the call's name and arguments and the tool result in the text, and a
    non-empty assistant mask that covers the tool call, from the template's own
    `{% generation %}` blocks or from TRL's training version of it (`training_chat_template`).
    """
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ModelInputError(
            f"{name}: tokenizer has no chat template; set tokenizer.chat_template to one that "
            "renders tools, tool calls and tool results inside {% generation %} blocks"
        )
    tools = [_probe_tool(_CALLED_TOOL), _probe_tool(_UNUSED_TOOL)]
    messages = _probe_messages({"key": _ARG_VALUE})
    try:
        try:
            rendered = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        except TypeError:
            # Some templates only accept tool-call arguments as a JSON string.
            messages = _probe_messages(f'{{"key": "{_ARG_VALUE}"}}')
            rendered = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    except (TemplateError, TypeError, ValueError, KeyError) as err:
        raise ModelInputError(
            f"{name}: chat template fails on a tool-calling conversation: {_one_line(err)}"
        ) from None
    if not isinstance(rendered, str):
        raise ModelInputError(f"{name}: chat template did not render to text")
    problems = []
    if _UNUSED_TOOL not in rendered:
        problems.append("ignores `tools` (tool schemas are not rendered)")
    renders_call = _CALLED_TOOL in rendered and _ARG_VALUE in rendered
    if not renders_call:
        problems.append("does not render assistant `tool_calls` (name and arguments)")
    if _RESULT not in rendered:
        problems.append("does not render `tool` role messages")
    problems.extend(_mask_problems(tokenizer, messages, tools, renders_call))
    if problems:
        raise ModelInputError(f"{name}: chat template " + "; ".join(problems))


def _mask_problems(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    renders_call: bool,
) -> list[str]:
    """What is wrong with the probe conversation's assistant mask (coverage of a rendered call)."""
    template = training_chat_template(tokenizer)
    if template is None:
        return [
            "has no {% generation %} blocks and TRL has no training version of it, "
            "so the assistant mask is empty"
        ]
    try:
        encoded = tokenizer.apply_chat_template(
            messages,
            tools=tools,
            chat_template=template,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
    except (TemplateError, TypeError, ValueError, KeyError) as err:
        return [f"fails to compute an assistant mask: {_one_line(err)}"]
    masked = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    if not masked:
        return ["yields an empty assistant mask despite {% generation %} blocks"]
    if renders_call and _CALLED_TOOL not in tokenizer.decode(masked):
        return ["keeps the tool call outside the {% generation %} blocks"]
    return []


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The template `trl.SFTTrainer` masks assistant tokens with, or None when there is none.

    That is the tokenizer's own template when it has `{% generation %}` blocks, else TRL's
    training version of a template it knows (Qwen, Llama 3, Gemma, ...).
    """
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default", "")
    if _GENERATION_TAG.search(template or ""):
        return template
    try:
        return get_training_chat_template(tokenizer)
    except (ValueError, TypeError, TemplateError):
        return None


def load_model_and_tokenizer(
    path_or_id: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory or a hub id, ready to use.

    `device` is a `torch.device` or a `trajectories.device.resolve_device` spec (default: the
    first GPU in bfloat16, else the CPU in float32). The chat template is checked
    with `validate_chat_template`; a tokenizer without a pad token gets its eos token as pad.
    Raises `ModelInputError` (one line) when the model cannot be found, loaded or used.
    """
    source = _resolve_source(path_or_id)
    if not isinstance(device, torch.device):
        try:
            device = resolve_device(device)
        except ValueError as err:
            raise ModelInputError(str(err)) from None
    dtype = dtype or default_dtype(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError, KeyError, ImportError) as err:
        hint = "" if Path(source).is_dir() else _HUB_HINT
        raise ModelInputError(f"cannot load {source}: {_one_line(err)}{hint}") from None
    validate_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelInputError(f"{source}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def check_tokenizer(path_or_id: str | Path) -> None:
    """Load only the tokenizer of a model and `validate_chat_template` it: the quick check of a
    `--base` before any stage runs. `ModelInputError` (one line) when it fails."""
    source = _resolve_source(path_or_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError, ImportError) as err:
        hint = "" if Path(source).is_dir() else _HUB_HINT
        raise ModelInputError(
            f"cannot load the tokenizer of {source}: {_one_line(err)}{hint}"
        ) from None
    validate_chat_template(tokenizer)


def _resolve_source(path_or_id: str | Path) -> str:
    """A local model directory as a string, or the hub id unchanged; missing paths are errors."""
    text = str(path_or_id)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelInputError(f"{path}: not a directory (expected a save_pretrained model)")
        if not (path / "config.json").is_file():
            raise ModelInputError(f"{path}: no config.json (expected a save_pretrained model)")
        return str(path)
    looks_like_path = isinstance(path_or_id, Path) or text.startswith(("/", ".", "~"))
    if looks_like_path or text.count("/") > 1 or text.endswith("/"):
        raise ModelInputError(f"{text}: no such model directory")
    return text


def _one_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type name."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__
