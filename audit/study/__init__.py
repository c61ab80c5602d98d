"""Studies: grids of audits (`grid`, run by `python -m audit.study`), their cells (`cells`), where
the cells run (`executors`: local processes or Ray tasks), their tables (`table`) and
docs/RESULTS.md rendered from the committed studies (`results`, `python -m audit.study.results`)."""
