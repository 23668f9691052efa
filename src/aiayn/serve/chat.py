"""Chat templates: a checkpoint's Jinja template turns messages into the prompt its model was
tuned on, rendered as `transformers`' `apply_chat_template` renders it.

A template comes with a checkpoint from the Hub and is untrusted code: it runs in Jinja's
immutable sandbox (no attribute of Python's internals, no changing of what it is given), with
the globals and filters transformers gives it (`raise_exception`, `strftime_now`, a `tojson`
that does not escape HTML, `dict`, a `namespace` that refuses underscored names) and the
loop controls. Messages reach it as plain JSON values only.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from tokenizers import Tokenizer

from aiayn.data.tokenizer import TextTokenizer
from aiayn.interop.hf_specials import chat_template
from aiayn.serve.chat_bounds import BoundedSandbox, TemplateError, bounded, bounded_filter

__all__ = ["ChatTemplate", "TemplateError", "compile_template"]


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
    sort_keys: bool = False,
) -> str:  # fmt: skip
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)  # fmt: skip


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _Dict:
    """`dict(...)` for templates, without the type itself (whose attributes lead out)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """Jinja's namespace, refusing underscored names (a way to CPython's internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # Jinja's own signature trick
        self, args = args[0], args[1:]
        for name in dict(*args, **kwargs):
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, *args, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"a namespace cannot hold the underscored name {name!r}"
            )


def compile_template(source: str) -> jinja2.Template:
    """`source` compiled in the sandbox (TemplateError: not a valid template)."""
    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = bounded_filter("tojson", _tojson)
    env.globals.update(
        raise_exception=_raise_exception,
        strftime_now=_strftime_now,
        dict=_Dict(),
        namespace=_Namespace,
    )
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateError as e:
        raise TemplateError(f"the chat template is not valid Jinja: {e}") from None
    except (RecursionError, MemoryError, ValueError, ArithmeticError) as e:  # Jinja's folding
        raise TemplateError(f"the chat template cannot compile: {type(e).__name__}: {e}") from None


class ChatTemplate:
    """A run's chat template, the special tokens it may name (`bos_token`, `eos_token`, ...),
    and the tokenizer that reads what it renders."""

    def __init__(self, source: str, tok: TextTokenizer) -> None:
        self.template = compile_template(source)
        roles = {"bos": tok.bos_id, "eos": tok.eos_id, "unk": tok.unk_id, "pad": tok.pad_id}
        self.special_tokens = {
            f"{role}_token": name
            for role, i in roles.items()
            if i is not None and (name := tok.tok.id_to_token(i)) is not None
        }
        # the template writes special tokens by name: this copy reads them as such (aiayn's
        # own tokenizers read a name as plain text), so a message may not hold one
        self.tok = Tokenizer.from_str(tok.tok.to_str())
        self.tok.encode_special_tokens = False
        self.names = [t.content for t in tok.tok.get_added_tokens_decoder().values() if t.special]

    @classmethod
    def of_run(cls, run_dir: Path, tok: TextTokenizer) -> ChatTemplate | None:
        """The template an import kept in `run_dir`; None where it has none."""
        source = chat_template(run_dir)
        return None if source is None else cls(source, tok)

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The ids of the prompt for `messages`, as `apply_chat_template(..., tokenize=True,
        add_generation_prompt=True)` gives them. ValueError: a message's text (its content or
        its name) holds a special token's name (which would be read as that token), or the
        template fails."""
        for i, m in enumerate(messages):
            for key, text in m.items():  # the role is one of four names; content, name: any
                if found := next((n for n in self.names if n in text), None):
                    raise ValueError(
                        f"messages[{i}].{key}: holds the special token {found!r}, which only "
                        "the chat template may write"
                    )
        return self.tok.encode(self.render(messages), add_special_tokens=False).ids

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt for `messages` (plain JSON values), ending where the assistant's next
        message begins. TemplateError: the template raised, or the sandbox refused it."""
        try:
            return bounded(
                self.template.generate(
                    **self.special_tokens,
                    messages=messages,
                    tools=None,
                    documents=None,
                    add_generation_prompt=add_generation_prompt,
                )
            )
        except TemplateError:  # over a bound (aiayn.serve.chat_bounds)
            raise
        except jinja2.exceptions.SecurityError as e:
            raise TemplateError(f"the chat template did what its sandbox refuses: {e}") from None
        except jinja2.exceptions.TemplateError as e:
            raise TemplateError(f"the chat template failed: {e}") from None
        except Exception as e:  # code from a checkpoint may raise anything (RecursionError)
            raise TemplateError(f"the chat template failed: {type(e).__name__}: {e}") from None
