"""Load any causal LM (local directory or hub id) and check its chat template can train agents."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jinja2 import TemplateError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from trl.chat_template_utils import (
    get_training_chat_template,
    is_chat_template_prefix_preserving,
    supports_tool_calling,
)

from trajectories.device import default_dtype, resolve_device
from trajectories.jsonl import InputError


class ModelInputError(InputError):
    """A model or tokenizer the audit cannot use; the message is one line saying what is wrong."""


class PrefixRenderError(ValueError):
    """A conversation whose prefixes the chat template does not render as prefixes."""


MaskMethod = Literal["generation", "trl-training", "prefix"]


@dataclass(frozen=True)
class MaskPlan:
    """How the assistant mask is computed (`choose_mask_method`) and the template rendered."""

    method: MaskMethod
    template: str


NO_MASK = (
    "has no {% generation %} blocks, TRL has no training version of it and it does not "
    "preserve prefixes, so no assistant mask can be derived"
)
_TEMPLATE_ERRORS = (TemplateError, TypeError, ValueError, KeyError)


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


def validate_chat_template(tokenizer: PreTrainedTokenizerBase, family: str | None = None) -> None:
    """Raise `ModelInputError` naming the model `family` and everything its chat template lacks.

    `family` defaults to the tokenizer's `name_or_path`. Renders a probe conversation (tool
    schemas, a tool call, a tool result, a final answer) and requires TRL's
    `supports_tool_calling`, the schemas, the call's name and arguments and the tool result in
    the text, and a non-empty assistant mask (see `choose_mask_method`) that covers the call.
    """
    name = family or getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    if not _template_text(tokenizer):
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
    except _TEMPLATE_ERRORS as err:
        raise ModelInputError(
            f"{name}: chat template cannot render a tool-calling conversation (assistant tool "
            f"calls and `tool` messages): {_one_line(err)}"
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
    if renders_call and _RESULT in rendered and not _supports_tool_calling(tokenizer):
        problems.append(
            "fails TRL's supports_tool_calling (a call with empty content, then a tool result, "
            "loses the call's name, arguments or the result)"
        )
    problems.extend(_mask_problems(tokenizer, messages, tools, renders_call))
    if problems:
        raise ModelInputError(f"{name}: chat template " + "; ".join(problems))


def _supports_tool_calling(tokenizer: PreTrainedTokenizerBase) -> bool:
    """TRL's `supports_tool_calling`, False where its render raises."""
    try:
        return supports_tool_calling(tokenizer)
    except _TEMPLATE_ERRORS:
        return False


def _mask_problems(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    renders_call: bool,
) -> list[str]:
    """What is wrong with the probe conversation's assistant mask (coverage of a rendered call)."""
    plan = choose_mask_method(tokenizer)
    if plan is None:
        return [NO_MASK]
    try:
        ids, mask = encode_with_assistant_mask(tokenizer, plan, messages, tools)
    except _TEMPLATE_ERRORS as err:
        return [f"fails to compute an assistant mask ({plan.method}): {_one_line(err)}"]
    masked = [t for t, m in zip(ids, mask, strict=True) if m]
    if not masked:
        return [f"yields an empty assistant mask ({plan.method})"]
    if renders_call and _CALLED_TOOL not in tokenizer.decode(masked):
        return [f"keeps the tool call outside the assistant mask ({plan.method})"]
    return []


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The template `trl.SFTTrainer` masks assistant tokens with, or None when there is none.

    That is the tokenizer's own template when it has `{% generation %}` blocks, else TRL's
    training version of a template it knows (Qwen, Llama 3, Gemma, ...).
    """
    template = _template_text(tokenizer)
    if _GENERATION_TAG.search(template):
        return template
    try:
        return get_training_chat_template(tokenizer)
    except _TEMPLATE_ERRORS:
        return None


def choose_mask_method(tokenizer: PreTrainedTokenizerBase) -> MaskPlan | None:
    """How assistant tokens are found, or None when no way applies.

    In order: the template's own `{% generation %}` blocks ("generation"); TRL's training
    version of the template ("trl-training"); renders of growing prefixes of each conversation
    ("prefix"), when TRL's `is_chat_template_prefix_preserving` holds for the template.
    """
    own = _template_text(tokenizer)
    template = training_chat_template(tokenizer)
    if template is not None:
        return MaskPlan("generation" if template == own else "trl-training", template)
    try:
        preserving = bool(own) and is_chat_template_prefix_preserving(tokenizer)
    except _TEMPLATE_ERRORS:
        preserving = False
    return MaskPlan("prefix", own) if preserving else None


def encode_with_assistant_mask(
    tokenizer: PreTrainedTokenizerBase,
    plan: MaskPlan,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and its assistant mask (1 on assistant tokens).

    With `plan.method == "prefix"` the assistant tokens of each assistant message are the text
    its render adds: the conversation through it, minus the conversation before it with the
    generation prompt. Raises `PrefixRenderError` when a prefix does not render as a prefix.
    """
    if plan.method != "prefix":
        encoded = tokenizer.apply_chat_template(
            messages,
            tools=tools,
            chat_template=plan.template,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        return list(encoded["input_ids"]), list(encoded["assistant_masks"])

    def render(upto: int, prompt: bool) -> str:
        return tokenizer.apply_chat_template(
            messages[:upto],
            tools=tools,
            chat_template=plan.template,
            tokenize=False,
            add_generation_prompt=prompt,
        )

    full = render(len(messages), False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = render(index, True), render(index + 1, False)
        if not (through.startswith(before) and full.startswith(through)):
            raise PrefixRenderError(
                f"message {index}: the chat template renders this conversation's prefixes "
                "differently from the whole conversation"
            )
        spans.append((len(before), len(through)))
    encoded = tokenizer(full, add_special_tokens=False)
    ids = list(encoded["input_ids"])
    mask = [0] * len(ids)
    for start, stop in spans:
        if start == stop:
            continue
        first, last = encoded.char_to_token(start), encoded.char_to_token(stop - 1)
        if first is None or last is None:
            raise PrefixRenderError(f"characters {start}-{stop} map to no token")
        for position in range(first, last + 1):
            mask[position] = 1
    return ids, mask


def load_model_and_tokenizer(
    path_or_id: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory or a hub id, ready to use.

    `device` is a `torch.device` or a `trajectories.device.resolve_device` spec (default: the
    first GPU in bfloat16, else the CPU in float32). The chat template is checked with
    `validate_chat_template` before the weights load; a tokenizer without a pad token gets its
    eos token as pad.
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
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError, ImportError) as err:
        raise _load_error(source, err) from None
    validate_chat_template(tokenizer, family=config.model_type)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=dtype)
    except (OSError, ValueError, KeyError, ImportError) as err:
        raise _load_error(source, err) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelInputError(f"{source}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def check_tokenizer(path_or_id: str | Path) -> None:
    """Load only the tokenizer and config of a model and `validate_chat_template` it: the quick
    check of a `--base` before any stage runs. `ModelInputError` (one line) when it fails."""
    source = _resolve_source(path_or_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError, ImportError) as err:
        hint = "" if Path(source).is_dir() else _HUB_HINT
        raise ModelInputError(
            f"cannot load the tokenizer of {source}: {_one_line(err)}{hint}"
        ) from None
    validate_chat_template(tokenizer, family=config.model_type)


def generation_stop_ids(config: GenerationConfig | None) -> frozenset[int]:
    """The ids that end generation under `config` (a model's `generation_config`, or
    `GenerationConfig.from_pretrained(model_dir)`): its `eos_token_id`, an int or a list."""
    configured = getattr(config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    return frozenset(i for i in ids if i is not None)


def _load_error(source: str, err: BaseException) -> ModelInputError:
    """The one-line error of a model that cannot be loaded from `source`."""
    hint = "" if Path(source).is_dir() else _HUB_HINT
    return ModelInputError(f"cannot load {source}: {_one_line(err)}{hint}")


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


def _template_text(tokenizer: PreTrainedTokenizerBase) -> str:
    """The tokenizer's chat template (its default variant when it has several), or ""."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default", "")
    return template or ""


def _one_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type name."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__
