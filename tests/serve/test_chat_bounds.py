"""Chat templates are code from a checkpoint: bounded in the size of what they make and in
time (aiayn.serve.chat_bounds), whatever they raise is a TemplateError (a 422 naming the
template, never a 500), and a special token cannot reach the prompt through a message's name."""

import time

import pytest

from aiayn.serve import chat_bounds
from aiayn.serve.chat import ChatTemplate, TemplateError
from tests.byte_level import END, byte_level_tokenizer

TOK = byte_level_tokenizer()
MESSAGES = [{"role": "user", "content": "the cat"}]


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 10**8 }}",
        "{{ 'x' ~ 'y' * 10**7 }}",
        "{{ ['x'] * 10**8 }}",
        "{{ 'x'.ljust(10**8) }}",
        "{{ 'x' | center(10**8) }}",
        "{{ 'x' | indent(10**8, true) }}",
        "{{ ('x' * 10**6) | replace('x', 'yyy') }}",
        "{{ 2 ** (10 ** 9) }}",
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    ],
)
def test_a_template_that_renders_huge_is_refused(template) -> None:
    with pytest.raises(TemplateError, match="the limit is"):
        ChatTemplate(template, TOK).render(MESSAGES)


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("{{ range(100000) | join('x' * 1000) }}", "a joined text"),
        ("{{ ('x' * 1000).join(range(10000) | map('string')) }}", "a joined text"),
        ("{{ ('x' * 1000) | join('y' * 10000) }}", "a joined text"),
        ("{{ range(10000) | map('string') | join('x' * 1000) }}", "a joined text"),
        ("{{ lipsum(n=100000) }}", "lorem ipsum"),
        ("{{ '{:>999999999}'.format(1) }}", "a format with a width"),
        ("{{ '%999999999s' % 1 }}", "a format with a width"),
        ("{{ '%999999999s' | format(1) }}", "a format with a width"),
        ("{{ lipsum(1, false, 20, 10**6) }}", "lorem ipsum"),
    ],
)
def test_what_a_call_would_make_over_the_bounds_is_refused_first(template, said) -> None:
    """Checked after, a generator's 100,000 items joined by 2,000,000 characters would take
    200 GB first, a format's width of 999,999,999 one GB."""
    with pytest.raises(TemplateError, match=said):
        ChatTemplate(template, TOK).render(MESSAGES)


def test_a_template_that_raises_anything_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="RecursionError"):
        ChatTemplate("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", TOK).render([])


def test_a_template_that_renders_forever_is_stopped(monkeypatch) -> None:
    monkeypatch.setattr(chat_bounds, "RENDER_S", 0.2)
    forever = "{% for i in range(100000) %}{% for j in range(100) %}{% endfor %}{% endfor %}"
    start = time.monotonic()
    with pytest.raises(TemplateError, match=r"0\.2 s"):
        ChatTemplate(forever, TOK).render(MESSAGES)
    assert time.monotonic() - start < 2
    assert ChatTemplate("{{ messages[0].content }}", TOK).render(MESSAGES) == "the cat"


def test_a_special_token_in_a_name_is_refused() -> None:
    named = "{% for m in messages %}{{ m.name }}: {{ m.content }}{% endfor %}"
    template = ChatTemplate(named, TOK)
    plain = template.prompt_ids([{"role": "user", "content": "the cat", "name": "a dog"}])
    assert TOK.tok.token_to_id(END) not in plain
    with pytest.raises(ValueError, match=r"messages\[0\].name: holds the special token"):
        template.prompt_ids([{"role": "user", "content": "the cat", "name": f"a{END}"}])
