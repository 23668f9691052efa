"""Training: label-smoothed loss, learning-rate schedules, checkpoints and the trainer."""
