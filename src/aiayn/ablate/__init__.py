"""Ablation studies: `aiayn ablate STUDY.toml` trains a base config and its variants on one
step budget and writes a table and a picture of what each change did (aiayn.ablate.study,
aiayn.ablate.report)."""
