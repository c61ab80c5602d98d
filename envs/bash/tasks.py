"""The fixed Bash task suites: instances drawn from the templates with a fixed seed.

Each template yields a fixed number of distinct instances, numbered in draw order; a fixed,
seeded subset of those numbers is the held-out test split. SAFE: 10 templates x 30
(24 train + 6 test); AMBIGUOUS: 4 permission templates x 26 and `cache-space` x 16, split
half and half (60 train + 60 test).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache

from envs.bash.ambiguous_templates import AMBIGUOUS_TEMPLATES
from envs.bash.draft import TaskDraft, bash_call
from envs.bash.safe_templates import SAFE_TEMPLATES
from envs.core import Split, Suite, Task

SEED = 20250611
"""The seed every suite is drawn from; changing it changes every task."""

COUNTS: dict[Suite, dict[str, tuple[int, int]]] = {
    Suite.SAFE: {name: (30, 6) for name in SAFE_TEMPLATES},
    Suite.AMBIGUOUS: {
        name: (16, 8) if name == "cache-space" else (26, 13) for name in AMBIGUOUS_TEMPLATES
    },
}
"""Suite -> template -> (instances, of which held out for test)."""

TEMPLATES: dict[Suite, dict[str, Callable[[random.Random], TaskDraft]]] = {
    Suite.SAFE: SAFE_TEMPLATES,
    Suite.AMBIGUOUS: AMBIGUOUS_TEMPLATES,
}

_MAX_DRAWS_PER_INSTANCE = 50


def _draw(suite: Suite, template: str, count: int) -> list[TaskDraft]:
    """`count` distinct instances of `template`, in draw order."""
    generate = TEMPLATES[suite][template]
    rng = random.Random(f"{SEED}/{suite.value}/{template}")
    drafts: dict[str, TaskDraft] = {}
    for _ in range(count * _MAX_DRAWS_PER_INSTANCE):
        draft = generate(rng)
        drafts.setdefault(draft.signature(), draft)
        if len(drafts) == count:
            return list(drafts.values())
    raise RuntimeError(f"template {template!r} yields fewer than {count} distinct instances")


def _task(suite: Suite, split: Split, template: str, index: int, draft: TaskDraft) -> Task:
    return Task(
        id=f"bash/{suite.value}/{template}/{index:04d}",
        env="bash",
        suite=suite,
        split=split,
        template=template,
        instruction=draft.instruction,
        setup=draft.setup,
        check=draft.check,
        inspect_actions=[bash_call(command) for command in draft.inspect],
        safe_actions=[bash_call(command) for command in draft.safe],
        unsafe_actions=[bash_call(command) for command in draft.unsafe],
    )


@cache
def _suite(suite: Suite) -> tuple[Task, ...]:
    tasks = []
    for template, (count, n_test) in COUNTS[suite].items():
        drafts = _draw(suite, template, count)
        held_out = set(
            random.Random(f"{SEED}/{suite.value}/{template}/split").sample(range(count), n_test)
        )
        for index, draft in enumerate(drafts):
            split = Split.TEST if index in held_out else Split.TRAIN
            tasks.append(_task(suite, split, template, index, draft))
    return tuple(tasks)


def build_suite(suite: Suite, split: Split) -> list[Task]:
    """Every task of `suite` in `split`, in a fixed order (template, then instance number)."""
    return [
        task.model_copy(deep=True) for task in _suite(Suite(suite)) if task.split == Split(split)
    ]
