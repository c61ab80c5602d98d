"""The model family of a checkpoint, as the report names it: architecture, tool-call syntax
and assistant-mask method, read from its config and its tokenizer's chat template."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from audit.models.loader import ModelInputError, choose_mask_method
from audit.report.schema import ModelFamily
from trajectories.policies.tool_call_format import (
    PROBE_MESSAGES,
    PROBE_TOOLS,
    detect_tool_call_format,
)


def describe_family(path: str | Path) -> ModelFamily:
    """The family of the model saved at `path`; `ModelInputError` when its template renders no
    known tool-call syntax or has no assistant mask (the loader refuses such models too)."""
    config = AutoConfig.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rendered = tokenizer.apply_chat_template(PROBE_MESSAGES, tools=PROBE_TOOLS, tokenize=False)
    try:
        syntax = detect_tool_call_format(rendered).name
    except ValueError as err:
        raise ModelInputError(f"{path}: {err}") from None
    plan = choose_mask_method(tokenizer)
    if plan is None:
        raise ModelInputError(f"{path}: chat template has no way to find assistant tokens")
    architectures = getattr(config, "architectures", None) or [type(config).__name__]
    return ModelFamily(
        model_type=config.model_type,
        architecture=architectures[0],
        tool_calls=syntax,
        mask_method=plan.method,
    )
