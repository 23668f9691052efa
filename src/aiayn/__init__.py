"""aiayn: the Transformer of "Attention Is All You Need", from scratch on PyTorch."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `aiayn.generate` and `aiayn.stream` without importing torch for `import aiayn`
    if name in ("generate", "stream"):
        from aiayn.decode import text

        return getattr(text, name)
    raise AttributeError(f"module 'aiayn' has no attribute {name!r}")
