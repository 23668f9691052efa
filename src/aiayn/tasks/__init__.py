"""Tasks join data, model and metrics for the trainer: what a batch is, its loss, validation."""
