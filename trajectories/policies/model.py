"""`ModelPolicy`: any causal LM as an agent, with continuous batching across episodes.

Each live episode holds a row ("slot") of a `SlotCache`. Its first turn feeds the conversation
rendered by the tokenizer's chat template (messages and tools, generation prompt added); later
turns feed only what the template added since the model's own sampled tokens (the tool result
and the next generation prompt): environment tokens are forced in, sampled tokens stay as
sampled. Forced tokens are prefilled one row at a time in one forward; sampling runs one
forward per token for every row that is writing. When a row's turn ends (an end-of-turn token:
the tokenizer's eos or the model's generation eos ids, or `max_new_tokens`), `advance` returns
it to the rollout at once, whose environment steps it while the other rows keep writing: no
row waits for another's longer turn, and a finished episode's slot takes the next one.

The text is parsed by the template's chat family (`chat_family`: transformers' response parser
where it knows the template, else the project's own), with all the turn's calls where the syntax
allows parallel calls. Text that does not parse, or a turn cut at `max_new_tokens`, becomes a
turn with `error`, which the rollout answers with an error observation and counts. Sampling
draws one uniform number per token from the episode's own generator (`EpisodeState.rng`) and
inverts the CDF, so the same seed gives the same episodes whatever the batch size, up to
floating-point ties; temperature 0 is greedy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jinja2 import TemplateError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from envs.core import ToolCall
from trajectories.device import default_dtype, resolve_device
from trajectories.policies.base import AssistantTurn, EpisodeState, Policy
from trajectories.policies.chat_family import ChatFamily, chat_family
from trajectories.policies.slot_cache import SlotCache
from trajectories.rollout import schema_problem

DEFAULT_MAX_NEW_TOKENS = 128
_ROW = "model_policy_row"
"""Key of `EpisodeState.scratch` under which the policy keeps (policy, row)."""


@dataclass(frozen=True)
class Generation:
    """One turn's sampled tokens (the end-of-turn token included when sampled)."""

    token_ids: list[int]
    ended: bool


@dataclass(eq=False)
class _Row:
    """One episode in slot `slot` of the cache.

    `feed` are tokens not yet fed (forced ones, or the last sampled one); `sampled` the tokens
    of the turn being written; `waiting` is set when a turn is done and not yet stepped by the
    rollout; `turns` counts the turns this row wrote; `last` / `ended` describe the last one.
    """

    state: EpisodeState
    slot: int
    feed: list[int]
    turns: int
    sampled: list[int] = field(default_factory=list)
    waiting: bool = False
    last: int = 0
    ended: bool = True


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
        stops = [tokenizer.decode([i], skip_special_tokens=False) for i in sorted(self.stop_ids)]
        self.family: ChatFamily = chat_family(tokenizer, stops)
        self._cache: SlotCache | None = None
        self._rows: list[_Row | None] = []

    def config(self) -> dict[str, Any]:
        """Model source, sampling settings and the tool-call syntax in use."""
        return {
            "model": str(getattr(self.model, "name_or_path", "")),
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "tool_call_format": self.family.syntax,
        }

    def act_batch(self, states: list[EpisodeState]) -> list[AssistantTurn]:
        """One turn for every state: `advance` until each has its turn."""
        turns: dict[int, AssistantTurn] = {}
        while len(turns) < len(states):
            turns.update(self.advance(states))
        return [turns[position] for position in range(len(states))]

    @torch.inference_mode()
    def advance(self, states: list[EpisodeState]) -> dict[int, AssistantTurn]:
        """Generate until at least one state's turn ends; return those turns by position.

        States whose last turn the rollout has stepped get their next prompt; a state whose
        turn is not stepped yet keeps waiting; new states get a slot; slots of episodes no
        longer in `states` are freed.
        """
        rows = self._assign(states)
        done = self._generate()
        return {
            position: self.turn(row.state, done[row])
            for position, row in enumerate(rows)
            if row in done
        }

    def turn(self, state: EpisodeState, generation: Generation) -> AssistantTurn:
        """Parse one generation into a turn, with its text, length and verdict in `info`."""
        written = generation.token_ids[:-1] if generation.ended else generation.token_ids
        text = self.tokenizer.decode(written, skip_special_tokens=False)
        info: dict[str, Any] = {"text": text, "sampled_tokens": len(generation.token_ids)}
        if not generation.ended:
            error: str | None = f"no end of turn within {self.max_new_tokens} tokens"
            content, calls = text, ()
        else:
            whole = self.tokenizer.decode(generation.token_ids, skip_special_tokens=False)
            content, calls, error = self.family.parse(whole)
        if error is not None:
            return AssistantTurn(content=text, error=error, info=info | {"malformed": True})
        tool_calls = tuple(
            ToolCall(name=c["function"]["name"], arguments=c["function"]["arguments"])
            for c in calls
        )
        malformed = any(schema_problem(call, state.tools) is not None for call in tool_calls)
        return AssistantTurn(
            content=content, tool_calls=tool_calls, info=info | {"malformed": malformed}
        )

    def _assign(self, states: list[EpisodeState]) -> list[_Row]:
        """The row of each state, after freeing the slots of episodes that are gone."""
        if self._cache is None:
            self._cache = SlotCache(max(len(states), 1))
            self._rows = [None] * self._cache.rows
        live = {id(state) for state in states}
        self._rows = [r if r is not None and id(r.state) in live else None for r in self._rows]
        rows = []
        for state in states:
            owner, row = state.scratch.get(_ROW, (None, None))
            if owner is not self or not any(row is r for r in self._rows):
                row = self._new_row(state)
            elif row.waiting and state.turns != row.turns - 1:
                self._next_turn(row, resume=state.turns == row.turns)
            rows.append(row)
        self._compact()
        return rows

    def _new_row(self, state: EpisodeState) -> _Row:
        """A slot for `state`, its whole conversation to feed."""
        assert self._cache is not None
        if None not in self._rows:
            extra = len(self._rows)
            self._cache.add_rows(extra)
            self._rows += [None] * extra
        slot = self._rows.index(None)
        self._cache.reset(slot)
        row = _Row(state, slot, self._full_prompt(state), state.turns)
        self._rows[slot] = row
        state.scratch[_ROW] = (self, row)
        return row

    def _next_turn(self, row: _Row, resume: bool) -> None:
        """Feed what the template added after the row's last turn; everything again when the
        conversation is not the row's own (`resume` False) or the template cannot say."""
        assert self._cache is not None
        suffix = self._suffix(row.state.messages, row.ended) if resume else None
        if suffix is None:
            self._cache.reset(row.slot)
            row.turns = row.state.turns
            row.feed = self._full_prompt(row.state)
        else:
            ids = self.tokenizer(suffix, add_special_tokens=False)["input_ids"]
            row.feed = [row.last, *ids]
        row.sampled, row.waiting = [], False

    def _full_prompt(self, state: EpisodeState) -> list[int]:
        text = self._render(state.messages, state.tools, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _compact(self) -> None:
        """Drop free slots from the cache once they are at least half of it."""
        assert self._cache is not None
        kept = [slot for slot, row in enumerate(self._rows) if row is not None]
        if not kept or len(kept) * 2 > len(self._rows):
            return
        self._cache.keep_rows(kept)
        self._rows = [self._rows[slot] for slot in kept]
        for slot, row in enumerate(self._rows):
            assert row is not None
            row.slot = slot

    def _generate(self) -> dict[_Row, Generation]:
        """Prefill and decode the active rows until at least one turn ends."""
        done: dict[_Row, Generation] = {}
        while not done:
            active = [r for r in self._rows if r is not None and not r.waiting]
            if not active:
                break
            for row in active:
                if len(row.feed) > 1:
                    self._sampled([row], self._prefill(row), done)
            decoding = [r is not None and not r.waiting and len(r.feed) == 1 for r in self._rows]
            if any(decoding):
                logits = self._decode(decoding)
                rows = [r for r, on in zip(self._rows, decoding, strict=True) if on]
                index = torch.tensor([k for k, on in enumerate(decoding) if on])
                self._sampled(rows, logits[index.to(logits.device)], done)
        return done

    def _prefill(self, row: _Row) -> torch.Tensor:
        """Feed all of `row`'s pending tokens in one forward; logits after the last, (1, vocab)."""
        assert self._cache is not None
        device = self.model.device
        positions, mask = self._cache.plan_prefill(
            row.slot, len(row.feed), self.model.dtype, device
        )
        ids = torch.tensor([row.feed], dtype=torch.long, device=device)
        return self._forward(ids, positions, mask)

    def _decode(self, decoding: list[bool]) -> torch.Tensor:
        """One token for every decoding row in one forward; logits (rows, vocab)."""
        assert self._cache is not None
        device = self.model.device
        tokens = [
            row.feed[0] if on and row is not None else self.pad_id
            for row, on in zip(self._rows, decoding, strict=True)
        ]
        positions, mask = self._cache.plan_decode(decoding, self.model.dtype, device)
        ids = torch.tensor(tokens, dtype=torch.long, device=device)[:, None]
        return self._forward(ids, positions, mask)

    def _forward(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    def _sampled(
        self, rows: list[_Row], logits: torch.Tensor, done: dict[_Row, Generation]
    ) -> None:
        """Sample one token per row; a row whose turn ends goes into `done`."""
        tokens = self._pick(logits, [row.state.rng for row in rows]).tolist()
        for row, token in zip(rows, tokens, strict=True):
            row.sampled.append(token)
            row.feed = [token]
            ended = token in self.stop_ids
            if ended or len(row.sampled) >= self.max_new_tokens:
                done[row] = Generation(list(row.sampled), ended)
                row.waiting, row.last, row.ended, row.feed = True, token, ended, []
                row.turns += 1

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
    device: str = "auto",
) -> ModelPolicy:
    """A `ModelPolicy` for a local model directory or a hub id, in eval mode, on `device`
    (`trajectories.device.resolve_device`: by default the first GPU in bfloat16 when there is
    one, else the CPU in float32). Raises `ValueError` with one line when the model cannot be
    found, loaded or driven.
    """
    local = Path(path).expanduser()
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") > 1 or local.exists()
    if looks_local and not (local / "config.json").is_file():
        raise ValueError(f"{path}: no such model directory (expected a save_pretrained model)")
    source = str(local) if looks_local else path
    target = resolve_device(device)
    dtype = default_dtype(target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError, KeyError, ImportError) as err:
        raise ValueError(f"cannot load model {path}: {_first_line(err)}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{path}: tokenizer has no chat template")
    return ModelPolicy(model.to(target), tokenizer, temperature, max_new_tokens)


def _first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type name."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
