"""Decoding: greedy and beam search over the decoder's key/value cache."""
