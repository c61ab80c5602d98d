"""Training: teacher induction (`teacher`), student distillation (`distill`) and the TRL set-up
they share (`trl_setup`: assistant-masked tokenization, LoRA specs, trainer arguments)."""
