"""Text and parallel datasets, tokenizers, and length-bucketed batching."""
