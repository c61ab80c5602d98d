"""Studies: grids of audits (`grid`, run by `python -m audit.study`), their tables (`table`) and
docs/RESULTS.md rendered from the committed studies (`results`, `python -m audit.study.results`)."""
