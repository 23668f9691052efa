"""What a chat template may take of the server: time and memory.

A template is code from a checkpoint, run on every chat request. Jinja's sandbox keeps it from
Python's internals, not from running long or building huge values: `'x' * 10**10` is one
allocation of 10 GB, `2 ** 10**9` a second of arithmetic that nothing interrupts, nested loops
over `range(100000)` run for hours, and the rendered text is then tokenized whole.

So a template renders within these bounds, each refused as a TemplateError naming it:
- its text: at most MAX_RENDERED characters, counted as it is written;
- every value an operator (`+`, `*`, `**`, `%`), a call or a filter is given or gives back: a
  text or list of at most MAX_RENDERED items, an int of at most MAX_DIGITS digits; a result
  that could exceed this (`*`, `**`, `replace`, `join`, `lipsum`, a format's width) is refused
  before it is made;
- its time: RENDER_S seconds, checked at each line of the template's code (a trace function on
  the rendering thread alone, removed after), so that the thread that renders it ends.
What is not bounded: `~` joins texts unchecked (at most doubling what exists, once per line
run), so a template may reach a few times MAX_RENDERED before a check sees it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator, Sized
from functools import wraps
from types import FrameType
from typing import Any

from jinja2.defaults import DEFAULT_NAMESPACE
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aiayn.serve.schema import MAX_BODY

MAX_RENDERED = 2 * MAX_BODY  # characters: a request's messages are at most MAX_BODY
MAX_DIGITS = 4_300  # Python's own bound on an int written as text
MAX_BITS = int(MAX_DIGITS * 3.33)
RENDER_S = 1.0
TEMPLATE_FILE = "<template>"  # what Jinja names the code it compiles from a string


class TemplateError(ValueError):
    """A template that cannot be rendered, or refused what it tried (the sandbox)."""


def _too_big(what: str, size: int, unit: str = "characters", limit: int = MAX_RENDERED) -> None:
    raise TemplateError(f"the chat template made {what} of {size:,} {unit}; the limit is {limit:,}")


def check_value(value: object, what: str = "a value", count: bool = False) -> object:
    """`value`, unless it is a text, list or int over the bounds (`count`: an argument, an
    int that may be a width or a count of what a call makes)."""
    if isinstance(value, str | list | tuple) and len(value) > MAX_RENDERED:
        _too_big(what, len(value), "items" if not isinstance(value, str) else "characters")
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_BITS:
            _too_big(what, value.bit_length(), "bits", MAX_BITS)
        if count and abs(value) > MAX_RENDERED:
            _too_big(what, abs(value), "(a length, width or count)")
    return value


def check_format(text: str) -> None:
    """A format string ('%9999999s', '{:>9999999}') whose widths stay within the bounds."""
    for number in re.findall(r"\d+", text):
        if len(number) > len(str(MAX_RENDERED)) or int(number) > MAX_RENDERED:
            _too_big("a format with a width", int(number[:12]), "(its first 12 digits)")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left operator right` before it is computed, if its result is over the bounds."""
    sequence = str | list | tuple
    if operator == "*" and isinstance(left, int) and isinstance(right, sequence):
        left, right = right, left
    if operator == "*" and isinstance(left, sequence) and isinstance(right, int):
        check_value(len(left) * max(right, 0), "a repeated text or list", count=True)
    elif operator == "+" and isinstance(left, sequence) and isinstance(right, sequence):
        check_value(len(left) + len(right), "a joined text or list", count=True)
    elif operator == "*" and isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_BITS:
            _too_big("a product", left.bit_length() + right.bit_length(), "bits", MAX_BITS)
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
        if right > 0 and left.bit_length() * right > MAX_BITS:
            _too_big("a power", left.bit_length() * right, "bits", MAX_BITS)
    elif operator == "%" and isinstance(left, str):
        check_format(left)


def check_call(function: Callable, args: tuple, kwargs: dict[str, Any]) -> None:
    """Refuse a call given a value over the bounds, or one that would make one."""
    for value in (*args, *kwargs.values()):
        check_value(value, "an argument", count=True)
    owner, name = owner_of(function), getattr(function, "__name__", "")
    if isinstance(owner, str) and name in ("format", "format_map"):
        check_format(owner)
    filter_name = getattr(function, "jinja_filter", "")
    if name == "join" or filter_name == "join":  # sep.join(items), items|join(sep)
        items, sep = join_parts(function, args)
        if isinstance(sep, str) and isinstance(items, Sized):
            check_value(len(sep) * max(len(items) - 1, 0), "a joined text", count=True)
    if function is LIPSUM:  # lipsum(n=5, html=True, min=20, max=100): paragraphs, words
        n, most = kwargs.get("n", (*args, 5)[0]), kwargs.get("max", (*args, 0, 0, 0, 100)[3])
        if isinstance(n, int) and isinstance(most, int):
            check_value(n * most * 10, "lorem ipsum", count=True)  # ~10 characters a word
    if name == "replace" or filter_name == "replace":
        texts = [owner] if isinstance(owner, str) else []
        texts += [a for a in args if isinstance(a, str)]
        if len(texts) >= 3:
            text, old, new = texts[:3]
            times = len(text) + 1 if not old else text.count(old)
            made = len(text) + times * max(len(new) - len(old), 0)
            check_value(made, "a replaced text", count=True)


def owner_of(function: Callable) -> object:
    """The object a method is bound to, also through the wrapper the sandbox puts around
    `str.format` (which keeps its name, not its owner)."""
    wrapped = getattr(function, "__wrapped__", function)
    return getattr(function, "__self__", getattr(wrapped, "__self__", None))


def join_parts(function: Callable, args: tuple) -> tuple[Any, Any]:
    """The items and separator of a call of `str.join` or of the `join` filter (`value`
    after what Jinja passes first, then `d`)."""
    owner = owner_of(function)
    if isinstance(owner, str):
        return (args[0] if args else None), owner
    value_at = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
    rest = args[value_at:]
    return (rest[0] if rest else None), (rest[1] if len(rest) > 1 else "")


def sized(function: Callable, args: tuple) -> tuple:
    """`args`, the items a join is given made a list, so that the size of what it makes is
    known before it is made (a generator's items are taken as the join takes them anyway)."""
    name = getattr(function, "__name__", "")
    if name != "join" and getattr(function, "jinja_filter", "") != "join":
        return args
    items, _ = join_parts(function, args)
    if items is None or isinstance(items, Sized):
        return args
    at = args.index(items)
    return (*args[:at], list(items), *args[at + 1 :])


LIPSUM = DEFAULT_NAMESPACE["lipsum"]


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, every operator, call and filter checked against the bounds."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: bounded_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return check_value(super().call_binop(context, operator, left, right), "a result")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        args = sized(__obj, args)
        check_call(__obj, args, kwargs)
        result = ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        return check_value(result, "a result")


def bounded_filter(name: str, f: Callable) -> Callable:
    """Filter `f`, its arguments and result checked (Jinja calls filters directly, not
    through the environment's `call`)."""

    @wraps(f)  # keeps `jinja_pass_arg`: what Jinja hands the filter first
    def checked(*args: Any, **kwargs: Any) -> Any:
        args = sized(checked, args)
        check_call(checked, args, kwargs)
        if name == "format" and args and isinstance(args[0], str):
            check_format(args[0])
        return check_value(f(*args, **kwargs), "a result")

    checked.jinja_filter = name  # type: ignore[attr-defined]
    return checked


def bounded(pieces: Iterator[str]) -> str:
    """The text of a template's `generate()`, within the bounds of size and time."""
    out, size = [], 0
    deadline = time.monotonic() + RENDER_S

    def line(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise TemplateError(f"the chat template ran past its time limit of {RENDER_S:g} s")
        return line

    def call(frame: FrameType, event: str, arg: Any) -> Any:
        return line if frame.f_code.co_filename == TEMPLATE_FILE else None

    previous = sys.gettrace()
    sys.settrace(call)
    try:
        for piece in pieces:
            size += len(piece)
            if size > MAX_RENDERED:
                _too_big("a text", size)
            out.append(piece)
    finally:
        sys.settrace(previous)
    return "".join(out)
