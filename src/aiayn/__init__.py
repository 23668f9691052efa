"""aiayn: the Transformer of "Attention Is All You Need", from scratch on PyTorch."""

__version__ = "0.1.0"
