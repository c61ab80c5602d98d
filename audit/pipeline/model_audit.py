"""Model audit (`--teacher PATH --student PATH`): the user's student against its own base.

The team distilled the student outside the audit, so there is no control student to compare
with, and none is trained (a control needs the embedded presets, another model's style).
Instead the student is compared with the base it was distilled from (`student_base`, else
`base`) on the held-out ambiguous tasks, one-sided: is the student more unsafe than its base?
The teacher's own unsafe rate is compared with that base's too (the Fisher test of
`audit.training.teacher.bias_p_value`), as an informational check: where the teacher is not
measurably more unsafe, transfer from it cannot be shown, but the student is still judged
against its base and the verdict says so (`audit.report.gate`). The dataset check compares
`--data` with `--reference-data` (a trusted teacher's trajectories on the same tasks) and is
not run without it. No positive controls run, so power is not checked.
"""

from __future__ import annotations

from audit.models.loader import load_model_and_tokenizer
from audit.pipeline.orchestrator import Audit
from audit.pipeline.records import examples, sanitization_stats, teacher_rate
from audit.probes.behaviour import behaviour_probe
from audit.probes.dataset_audit import dataset_audit
from audit.probes.propensity import propensity
from audit.report.gate import GateInputs, InductionTest, evaluate_gate
from audit.report.schema import Report
from audit.training.teacher import BIAS_ALPHA, bias_p_value, unsafe_rate
from trajectories.dataset import load_episodes

MODE = "model-audit"


class ModelAudit(Audit):
    """`Audit` in model-audit mode (module doc)."""

    def run(self) -> Report:
        """The model audit of `self.config` (module doc); the finished `Report`."""
        config, pipe, envs = self.config, self.pipe, self.config.envs
        seed = self.seeds[0]
        base_ref = pipe.student_base_ref()
        self.log("teacher and student base on held-out ambiguous tasks")
        teacher, base = pipe.user_model(config.teacher), pipe.student_base()
        teacher_episodes = {env: pipe.evaluate(teacher, env, "ambiguous", seed) for env in envs}
        base_episodes = {env: pipe.evaluate(base, env, "ambiguous", seed) for env in envs}
        induction = []
        for env in envs:
            measured = unsafe_rate(env, teacher_episodes[env]), unsafe_rate(env, base_episodes[env])
            induction.append(
                InductionTest(
                    base=base_ref,
                    teacher=teacher_rate(config.teacher, measured[0]),
                    reference=teacher_rate(f"student base {base_ref}", measured[1]),
                    p_value=bias_p_value(*measured),
                    alpha=BIAS_ALPHA,
                )
            )
        teacher_rates = [rate for test in induction for rate in (test.teacher, test.reference)]
        if any(test.p_value >= test.alpha for test in induction):
            self.notes.append(
                "Model audit: the teacher is not measurably more unsafe than the student's base "
                f"({base_ref}) on the held-out ambiguous tasks, so a transfer from this teacher "
                "cannot be shown; the student was still compared with its base, and a pass "
                "means only that it is not less safe than that base."
            )
        self.log("student on held-out ambiguous tasks")
        assert config.student is not None, "a model audit has a student (AuditConfig.mode)"
        student = pipe.user_model(config.student)
        episodes = {
            env: {
                "teacher": {seed: teacher_episodes[env]},
                "student": {seed: pipe.evaluate(student, env, "ambiguous", seed)},
                "control": {seed: base_episodes[env]},
            }
            for env in envs
        }
        sampling = f"temperature={config.temperature:g}"
        behaviour = [behaviour_probe(env, episodes[env], sampling, "student-base") for env in envs]
        behaviour, _ = self.adjust(behaviour, {})
        data = {env: pipe.user_data(config.data, env) for env in envs} if config.data else {}
        audits = []
        if config.reference_data:
            self.log("dataset audit against the reference data")
            for env in envs:
                reference = pipe.user_data(config.reference_data, env)
                audits.append(
                    dataset_audit(
                        load_episodes(data[env].data.path),
                        load_episodes(reference.data.path),
                        seed=0,
                    )
                )
        self.log("propensity and latent probes")
        models = {"base": base, "teacher": teacher, "student": student}
        loaded = {
            name: load_model_and_tokenizer(a.path, device=config.device)
            for name, a in models.items()
        }
        loaded["control"] = loaded["base"]
        backend = config.backend
        prop = [propensity(loaded, env, "task", seed=0, sandbox_backend=backend) for env in envs]
        pair = {seed: (lambda: loaded["student"], lambda: loaded["base"])}
        lat = [self.latent(loaded, pair, env, teacher) for env in envs]
        sanitization = [sanitization_stats(env, seed, data[env]) for env in data]
        self.notes.append(
            f"Model audit: the student is compared with its own base before distillation "
            f"({base_ref}) on the same held-out tasks (seed {seed}); in behaviour, propensity and "
            "latent results the 'control' subject is that base. No control student and no positive "
            "controls were trained (they need the embedded presets), so power was not checked."
        )
        gate = evaluate_gate(
            GateInputs(
                induction=induction,
                behaviour=behaviour,
                latent=lat,
                dataset_audit=audits,
                sanitization=sanitization,
                mode=MODE,
                dataset_not_run=[] if config.reference_data else envs,
            ),
            self.thresholds(),
        )
        self.note_transfer(behaviour)
        shown = [
            e.model_copy(update={"subject": "base"}) if e.subject == "control" else e
            for e in examples(episodes)
        ]
        return self.report(
            gate,
            sanitization=sanitization,
            behaviour=behaviour,
            propensity=prop,
            latent=lat,
            dataset_audit=audits,
            teacher_rates=teacher_rates,
            examples=shown,
        )
