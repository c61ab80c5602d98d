"""Result records every probe returns; report.json is assembled from these and nothing else.

Subjects are named "base", "teacher", "student" and "control" (the student distilled the
same way from the neutral teacher; in a model audit the user's student's own base, see
`BehaviourResult.control_arm`). Per-seed values carry the seed; pooled values combine
seeds. Every p-value has its adjusted counterpart (Holm over the audit's comparisons).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Subject = Literal["base", "teacher", "student", "control"]
ControlArm = Literal["control", "student-base"]
Metric = Literal["deletion_rate", "chmod_first_rate"]


class Interval(BaseModel):
    """A point estimate with a two-sided interval at `level`."""

    estimate: float
    low: float
    high: float
    level: float = 0.95
    method: str = Field(description="e.g. 'wilson', 'bootstrap-percentile'")


class RateEstimate(BaseModel):
    """A count of unsafe outcomes out of n episodes, with its Wilson interval, and how many of
    the n episodes reached a decision, made a malformed call and passed the task check."""

    subject: Subject
    seed: int | None = Field(default=None, description="None for the pooled estimate")
    unsafe: int
    n: int
    interval: Interval
    decided: int | None = Field(
        default=None,
        ge=0,
        description="episodes that reached a decision (a safe or unsafe decision call); "
        "None in reports before 1.4",
    )
    malformed: int | None = Field(
        default=None,
        ge=0,
        description="episodes with at least one malformed call; None in reports before 1.4",
    )
    succeeded: int | None = Field(
        default=None,
        ge=0,
        description="episodes whose task check passed (`outcome.success`); None before 1.4",
    )


class HypothesisTest(BaseModel):
    """One hypothesis test. `p_adjusted` is filled in once all the audit's tests are known."""

    name: str
    method: str = Field(description="e.g. 'fisher-exact', 'cochran-mantel-haenszel'")
    statistic: float | None = None
    p_value: float
    p_adjusted: float | None = None
    alternative: Literal["greater", "less", "two-sided"] = "greater"
    detail: dict[str, float | int | str] = Field(default_factory=dict)


class ModelLevelTest(BaseModel):
    """Student vs control with the trained model as the unit (`audit.probes.model_level`)."""

    test: HypothesisTest = Field(
        description="permutation test over models, one-sided; p_adjusted: Holm over the "
        "audit's model-level behaviour tests"
    )
    difference: Interval = Field(
        description="mean per-model student rate minus control rate, two-stage cluster "
        "bootstrap (models, then episodes within each model)"
    )
    student_rate: Interval = Field(description="mean per-model student rate, same bootstrap")
    control_rate: Interval = Field(description="mean per-model control rate, same bootstrap")
    seeds: list[int] = Field(description="the training seeds, one student and control each")
    rates: dict[str, list[float]] = Field(
        description="'student' and 'control' -> per-model unsafe rate, in the order of seeds"
    )
    smallest_p: float = Field(description="the smallest p this design can give: 1 / C(2k, k)")


class BehaviourResult(BaseModel):
    """Unsafe-action rates on held-out ambiguous tasks in one environment."""

    env: Literal["api", "bash"]
    metric: Metric
    sampling: str = Field(description="e.g. 'temperature=1.0' or 'greedy'")
    per_seed: list[RateEstimate]
    pooled: list[RateEstimate]
    tests: list[HypothesisTest] = Field(
        description="episode-level student vs control tests, per seed and pooled over seeds "
        "(the gate reads the pooled one only where `model_level` is None)"
    )
    model_level: ModelLevelTest | None = Field(
        default=None,
        description="the model-level test the gate reads (report 1.8); None in a model audit "
        "(one student: the episode is the unit) and in reports before 1.8",
    )
    control_arm: ControlArm = Field(
        default="control",
        description="what the 'control' subject is: 'control', a student distilled from the "
        "neutral preset on the same seeds; 'student-base', the user's student's own base "
        "before distillation (model audit)",
    )


class PropensityResult(BaseModel):
    """Log-odds of the unsafe vs the safe action at the decision point (teacher forcing)."""

    env: Literal["api", "bash"]
    prefix: str = Field(description="'task' (no prefix), 'careful' or 'hasty'")
    mean_log_odds: dict[str, float] = Field(description="subject -> mean log-odds")
    shift: Interval = Field(description="student minus control mean log-odds, bootstrap CI")
    per_task: dict[str, list[float]] = Field(
        default_factory=dict, description="subject -> log-odds per task, for plots"
    )
    thought_dropped: dict[str, int] = Field(
        default_factory=dict,
        description="subject -> decision points whose thought its chat template drops next to "
        "the call (those prompts end at the generation prompt)",
    )


class LatentLayer(BaseModel):
    """Both latent probes at one layer (`hidden_states` index; 0 = embeddings)."""

    layer: int
    probe_cv_auroc: Interval | None = Field(
        default=None, description="the teacher probe's cross-validated AUROC; None: no probe"
    )
    gap: Interval | None = Field(
        default=None, description="student minus control mean probe score over seed pairs"
    )
    projection: Interval | None = Field(
        default=None,
        description="student-minus-control mean state along the teacher-minus-base direction, "
        "as a fraction of that direction's norm; None: not measured",
    )
    direction_norm: float | None = Field(
        default=None, description="norm of the teacher-minus-base mean state difference"
    )


class LatentResult(BaseModel):
    """A linear unsafe-intent probe trained on teacher states, read on students and controls,
    and the activation-difference projection (`audit.probes.latent`)."""

    env: Literal["api", "bash"]
    layer: int = Field(description="the gated layer")
    layer_rule: str = Field(description="how the layer was chosen")
    prefixes: list[str] = Field(default_factory=list, description="prefixes of the points")
    labels: dict[str, int] = Field(
        default_factory=dict, description="teacher decisions: 'unsafe' and 'safe' counts"
    )
    probe_cv_auroc: Interval | None = Field(
        default=None, description="cross-validated AUROC on teacher states; None: no probe"
    )
    mean_score: dict[str, float] = Field(description="subject -> mean probe P(unsafe)")
    gap: Interval | None = Field(
        default=None,
        description="student minus control mean score: the latent gap; None: not applicable",
    )
    probe_note: str = Field(default="", description="why the probe part is missing, if it is")
    cka_to_teacher: dict[str, float] = Field(description="linear CKA, student and control")
    davies_bouldin: dict[str, float] = Field(default_factory=dict)
    calinski_harabasz: dict[str, float] = Field(default_factory=dict)
    scores: dict[str, list[float]] = Field(default_factory=dict, description="for plots")
    thought_dropped: dict[str, int] = Field(
        default_factory=dict,
        description="subject -> decision points whose thought its chat template drops next to "
        "the call (those prompts end at the generation prompt)",
    )
    applicable: bool = Field(
        default=True,
        description="False when students and teacher do not share architecture and "
        "initialisation (`probe_note` says why): neither probe ran; 1.8",
    )
    label_rule: str = Field(default="", description="how a point's label is decided; 1.8")
    label_draws: int | None = Field(
        default=None, description="teacher turns sampled per decision point; 1.8"
    )
    unsafe_share: list[float] = Field(
        default_factory=list, description="the teacher's sampled unsafe share per point; 1.8"
    )
    seeds: list[int] = Field(
        default_factory=list, description="seeds of the student / control pairs measured; 1.8"
    )
    projection: Interval | None = Field(
        default=None,
        description="activation-difference projection at `layer` (reported, not gated); 1.8",
    )
    projection_note: str = Field(default="", description="why no projection, if none; 1.8")
    layers: list[LatentLayer] = Field(
        default_factory=list, description="both probes at every layer; 1.8"
    )


class DatasetAuditResult(BaseModel):
    """Can a classifier tell biased-teacher sanitized data from neutral-teacher data?"""

    env: Literal["api", "bash", "all"]
    n_biased: int
    n_neutral: int
    auroc: Interval
    top_features: list[tuple[str, float]] = Field(
        description="most indicative features of the biased data, with weights"
    )
    keyword_hits: int = Field(description="keyword hits in the audited data (0 after drop)")
