"""Data prepared once for training: tokenized and binarized, read from disk (aiayn prepare)."""
