"""`ModelPolicy`: any causal LM as an agent, one generated turn for a whole batch of episodes.

An episode's first turn renders its conversation with the tokenizer's chat template (messages
and tools, generation prompt added). Later turns keep the episode's KV cache (`Context`) and
feed only what the template added since the model's own sampled tokens (the tool result and the
next generation prompt): environment tokens are forced in, sampled tokens stay as sampled. Each
turn runs the whole batch in lockstep, one forward per token step for all rows still writing,
with rows right-aligned, padding masked out of a 2D attention mask, and explicit position ids.
A row stops at an end-of-turn token (the tokenizer's eos or the model's generation eos ids).

The text is parsed in the template's tool-call syntax (`tool_call_format`). Text that does not
parse, or a turn cut at `max_new_tokens`, becomes a turn with `error`, which the rollout answers
with an error observation and counts. Sampling draws one uniform number per token from the
episode's own generator (`EpisodeState.rng`) and inverts the CDF, so the same seed gives the same
episodes, whatever the batch size up to floating-point ties; temperature 0 is greedy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jinja2 import TemplateError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.cache_utils import DynamicLayer

from envs.core import ToolCall
from trajectories.policies.base import AssistantTurn, EpisodeState, Policy
from trajectories.policies.tool_call_format import (
    PROBE_MESSAGES,
    PROBE_TOOLS,
    ToolCallFormat,
    detect_tool_call_format,
)
from trajectories.rollout import schema_problem

DEFAULT_MAX_NEW_TOKENS = 128
_CONTEXT = "model_policy_context"
"""Key of `EpisodeState.scratch` under which the policy keeps (policy, turns, context)."""


@dataclass(frozen=True)
class Context:
    """One episode's model state after a turn, kept so the next turn feeds only new tokens.

    `keys` / `values` hold per layer the cache at the episode's real tokens, shape
    (heads, tokens, head dim), already rotated to their positions; `pending` are sampled tokens
    not yet fed to the model; `ended` says whether the turn ended with an end-of-turn token.
    """

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    next_position: int
    pending: tuple[int, ...]
    ended: bool


@dataclass(frozen=True)
class Generation:
    """One row's sampled tokens (the end-of-turn token included when sampled) and its context.

    `context` is None when the model's cache cannot be kept between turns (e.g. sliding-window
    layers); the next turn then renders and feeds the whole conversation again.
    """

    token_ids: list[int]
    ended: bool
    context: Context | None


class ModelPolicy(Policy):
    """Drives `model` with `tokenizer`'s chat template; see the module docstring."""

    name = "model"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        temperature: float = 1.0,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.temperature = float(temperature)
        self.max_new_tokens = max_new_tokens
        self.stop_ids = _stop_ids(model, tokenizer)
        self.pad_id = next(
            i for i in (tokenizer.pad_token_id, *sorted(self.stop_ids)) if i is not None
        )
        self.call_format: ToolCallFormat = detect_tool_call_format(
            self._render(PROBE_MESSAGES, PROBE_TOOLS, add_generation_prompt=False)
        )

    def config(self) -> dict[str, Any]:
        """Model source, sampling settings and the tool-call syntax in use."""
        return {
            "model": str(getattr(self.model, "name_or_path", "")),
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "tool_call_format": self.call_format.name,
        }

    def act_batch(self, states: list[EpisodeState]) -> list[AssistantTurn]:
        """Generate one turn for every state at once and parse each; keep each episode's context."""
        prompts, contexts = zip(*(self._prompt(s) for s in states), strict=True)
        generations = self.generate(prompts, [s.rng for s in states], contexts)
        turns = []
        for state, generation in zip(states, generations, strict=True):
            state.scratch[_CONTEXT] = (self, state.turns + 1, generation.context)
            turns.append(self._turn(state, generation))
        return turns

    def _prompt(self, state: EpisodeState) -> tuple[list[int], Context | None]:
        """Token ids to feed next, and the context they continue (None: the whole conversation).

        After this policy's own last turn only the text the template adds since then (tool
        result, next generation prompt) is fed, behind the tokens the model itself sampled.
        """
        owner, turns, context = state.scratch.get(_CONTEXT, (None, -1, None))
        if owner is self and turns == state.turns and context is not None:
            suffix = self._suffix(state.messages, context.ended)
            if suffix is not None:
                ids = self.tokenizer(suffix, add_special_tokens=False)["input_ids"]
                return [*context.pending, *ids], context
        text = self._render(state.messages, state.tools, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"], None

    def _suffix(self, messages: list[dict[str, Any]], ended: bool) -> str | None:
        """The rendered text after the last assistant turn's end-of-turn token, with the
        generation prompt; None when the template does not render the conversation as a prefix
        of itself plus new turns."""
        eos = self.tokenizer.eos_token
        if not eos:
            return None
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        before = self._render(messages[: last + 1], [], add_generation_prompt=False)
        after = self._render(messages, [], add_generation_prompt=True)
        cut = before.rfind(eos) + len(eos)
        if cut < len(eos) or not after.startswith(before[:cut]):
            return None
        return ("" if ended else eos) + after[cut:]

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        rngs: Sequence[np.random.Generator],
        contexts: Sequence[Context | None],
    ) -> list[Generation]:
        """Feed each prompt behind its context and sample until each row ends, in lockstep.

        Rows are aligned to the right: the cache part and the new part are each left-padded,
        and the padding is masked out, so every row's last token is in the last column.
        """
        device = self.model.device
        past = [0 if c is None else c.keys[0].shape[1] for c in contexts]
        cached, width = max(past), max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(prompts), width), dtype=torch.long)
        mask = torch.zeros((len(prompts), cached + width), dtype=torch.long)
        for row, (prompt, context) in enumerate(zip(prompts, contexts, strict=True)):
            start = 0 if context is None else context.next_position
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            positions[row, width - len(prompt) :] = torch.arange(start, start + len(prompt))
            mask[row, cached - past[row] : cached] = 1
            mask[row, cached + width - len(prompt) :] = 1
        ids, positions, mask = ids.to(device), positions.to(device), mask.to(device)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=_stack(contexts, past, cached, self.model.config),
            use_cache=True,
            logits_to_keep=1,
        )
        cache, logits = out.past_key_values, out.logits[:, -1]
        keep_context = all(type(layer) is DynamicLayer for layer in cache.layers)
        next_positions = positions[:, -1:] + 1
        rows = list(range(len(prompts)))
        sampled: list[list[int]] = [[] for _ in prompts]
        ended = [False] * len(prompts)
        kept: list[Context | None] = [None] * len(prompts)

        def keep(k: int, row: int) -> None:
            if keep_context:
                kept[row] = _unstack(cache, mask, k, next_positions, sampled[row], ended[row])

        for step in range(self.max_new_tokens):
            tokens = self._pick(logits, [rngs[r] for r in rows])
            for row, token in zip(rows, tokens.tolist(), strict=True):
                sampled[row].append(token)
                ended[row] = token in self.stop_ids
            going = [k for k, row in enumerate(rows) if not ended[row]]
            if not going or step == self.max_new_tokens - 1:
                break
            if len(going) < len(rows):
                for k, row in enumerate(rows):
                    if ended[row]:
                        keep(k, row)
                index = torch.tensor(going, device=device)
                cache.batch_select_indices(index)
                tokens, mask, next_positions = tokens[index], mask[index], next_positions[index]
                rows = [rows[k] for k in going]
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            out = self.model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=next_positions,
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1]
            next_positions = next_positions + 1
        for k, row in enumerate(rows):
            keep(k, row)
        return [
            Generation(tokens, done, context)
            for tokens, done, context in zip(sampled, ended, kept, strict=True)
        ]

    def _pick(self, logits: torch.Tensor, rngs: list[np.random.Generator]) -> torch.Tensor:
        """Next token per row: argmax at temperature 0, else inverse-CDF sampling."""
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.double() / self.temperature, dim=-1)
        cdf = probs.cumsum(dim=-1)
        draws = torch.tensor([[rng.random()] for rng in rngs], dtype=cdf.dtype, device=cdf.device)
        chosen = torch.searchsorted(cdf, draws * cdf[:, -1:], right=True)
        return chosen.squeeze(1).clamp(max=cdf.shape[-1] - 1)

    def _render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        add_generation_prompt: bool,
    ) -> str:
        """The conversation as the chat template writes it; `ValueError` if it cannot."""
        try:
            text = self.tokenizer.apply_chat_template(
                messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                tokenize=False,
            )
        except (TemplateError, TypeError, ValueError, KeyError) as err:
            raise ValueError(
                f"chat template cannot render the conversation: {_first_line(err)}"
            ) from None
        if not isinstance(text, str):
            raise ValueError("chat template did not render to text")
        return text

    def _turn(self, state: EpisodeState, generation: Generation) -> AssistantTurn:
        """Parse one generation into a turn, with its text, length and verdict in `info`."""
        written = generation.token_ids[:-1] if generation.ended else generation.token_ids
        text = self.tokenizer.decode(written, skip_special_tokens=False)
        info: dict[str, Any] = {"text": text, "sampled_tokens": len(generation.token_ids)}
        if not generation.ended:
            error: str | None = f"no end of turn within {self.max_new_tokens} tokens"
            content, call = text, None
        else:
            content, call, error = self.call_format.parse(text)
        if error is not None:
            return AssistantTurn(content=text, error=error, info=info | {"malformed": True})
        if call is None:
            return AssistantTurn(content=content, info=info | {"malformed": False})
        tool_call = ToolCall(name=call["function"]["name"], arguments=call["function"]["arguments"])
        malformed = schema_problem(tool_call, state.tools) is not None
        return AssistantTurn(
            content=content, tool_call=tool_call, info=info | {"malformed": malformed}
        )


def _stack(
    contexts: Sequence[Context | None], past: list[int], width: int, config: Any
) -> DynamicCache | None:
    """A batch cache of `width` columns holding each context right-aligned (zeros elsewhere)."""
    present = [c for c in contexts if c is not None]
    if not present:
        return None
    layers = []
    for layer in range(len(present[0].keys)):
        shape = (len(contexts), *present[0].keys[layer].shape)
        keys = present[0].keys[layer].new_zeros(shape[:2] + (width,) + shape[3:])
        values = (
            present[0].values[layer].new_zeros(keys.shape[:3] + present[0].values[layer].shape[-1:])
        )
        for row, context in enumerate(contexts):
            if context is not None:
                keys[row, :, width - past[row] :] = context.keys[layer]
                values[row, :, width - past[row] :] = context.values[layer]
        layers.append((keys, values))
    return DynamicCache(ddp_cache_data=layers, config=config)


def _unstack(
    cache: DynamicCache,
    mask: torch.Tensor,
    k: int,
    next_positions: torch.Tensor,
    sampled: list[int],
    ended: bool,
) -> Context:
    """Row `k` of the batch cache at its real (unmasked) tokens, as a `Context`."""
    real = mask[k].bool()
    return Context(
        keys=tuple(layer.keys[k][:, real] for layer in cache.layers),
        values=tuple(layer.values[k][:, real] for layer in cache.layers),
        next_position=int(next_positions[k, 0]),
        pending=(sampled[-1],),
        ended=ended,
    )


def _stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """End-of-turn ids: the tokenizer's eos and the model's generation eos ids."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    stops = frozenset(i for i in (*ids, tokenizer.eos_token_id) if i is not None)
    if not stops:
        raise ValueError("model and tokenizer define no end-of-turn (eos) token")
    return stops


def load_model_policy(
    path: str,
    temperature: float = 1.0,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> ModelPolicy:
    """A `ModelPolicy` for a local model directory or a hub id, in eval mode.

    bfloat16 on the first GPU when there is one, float32 on the CPU. Raises `ValueError` with
    one line when the model cannot be found, loaded or driven.
    """
    local = Path(path).expanduser()
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") > 1 or local.exists()
    if looks_local and not (local / "config.json").is_file():
        raise ValueError(f"{path}: no such model directory (expected a save_pretrained model)")
    source = str(local) if looks_local else path
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError, KeyError, ImportError) as err:
        raise ValueError(f"cannot load model {path}: {_first_line(err)}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{path}: tokenizer has no chat template")
    return ModelPolicy(model.to(device), tokenizer, temperature, max_new_tokens)


def _first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type name."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
