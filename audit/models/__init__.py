"""The embedded tiny Llama family (tokenizer, chat template, sizes) and loading of any other model.

Modules: `chat_template` (control tokens, rendering, output parser; standard library only),
`tokenizer` (byte-level BPE training), `config` (sizes, `build_model`), `loader`
(`load_model_and_tokenizer`, `validate_chat_template`).
"""
