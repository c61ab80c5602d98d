"""The embedded bases: tiny "linked" and "control" models committed with the package.

`audit/models/embedded/linked-tiny/` and `audit/models/embedded/control-tiny/` are
`PretrainConfig(size="tiny", kind=KIND, seed=0)` bases (see `audit.models.corpus` for what the
kinds mean), so an audit on the tiny family needs no pretraining at first run. Regenerate both
(corpus and training, ~10 minutes on 2 cores) with::

    python -m audit.models embed

Other sizes are pretrained on first use and cached (`audit.models.pretrain.base_path`).
"""

from __future__ import annotations

from pathlib import Path

from audit.models.corpus import CORPUS_KINDS
from audit.models.pretrain import PretrainConfig, is_saved_base, pretrain

EMBEDDED_DIR = Path(__file__).with_name("embedded")
EMBEDDED_SIZES: tuple[str, ...] = ("tiny",)


def embedded_path(kind: str, size: str) -> Path:
    """Where the committed base of `kind` and `size` lives (it exists for `EMBEDDED_SIZES`)."""
    return EMBEDDED_DIR / f"{kind}-{size}"


def embedded_base(
    kind: str = "linked", size: str = "tiny", seed: int = 0, progress: bool = True
) -> Path:
    """The base of `kind`, `size` and pretraining `seed`: the committed one (seed 0), or
    pretrained and cached (another seed is another initialisation and corpus sample)."""
    if kind not in CORPUS_KINDS:
        raise ValueError(f"unknown base kind {kind!r}; choose from {', '.join(CORPUS_KINDS)}")
    committed = embedded_path(kind, size)
    if seed == 0 and size in EMBEDDED_SIZES and is_saved_base(committed):
        return committed
    return pretrain(PretrainConfig(size=size, kind=kind, seed=seed), progress=progress)


def regenerate_embedded(progress: bool = True) -> list[Path]:
    """Pretrain every committed base again into the package's `embedded/` directory."""
    return [
        pretrain(
            PretrainConfig(size=size, kind=kind, seed=0),
            out_dir=embedded_path(kind, size),
            progress=progress,
        )
        for size in EMBEDDED_SIZES
        for kind in CORPUS_KINDS
    ]
