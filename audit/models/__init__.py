"""The embedded tiny Llama family and loading of any other model.

Modules: `chat_template` (control tokens, rendering), `tokenizer` (byte-level BPE training),
`config` (sizes, `build_model`), `loader` (`load_model_and_tokenizer`,
`validate_chat_template`), `corpus` (persona episodes for pretraining), `pretrain` (the base
models), `persona_link` (what a base links habits to), `embedded` (the committed bases;
regenerate with `python -m audit.models embed`).
"""
