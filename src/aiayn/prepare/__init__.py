"""Data prepared once for training: tokenized, binarized and memory-mapped (aiayn prepare)."""
