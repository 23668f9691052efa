"""The OpenAI-compatible API's refusals name the field as the client wrote it: never "body"
for a field aiayn does not do, never pydantic's name for a branch of a union
("stop.constrained-str"), and the error of the branch the value took (a list's bad item, not
"not a text"); a list of bad items is refused at the first."""

import pytest
from pydantic import ValidationError

from aiayn.serve.openai_schema import CompletionRequest
from tests.serve.inprocess import call


@pytest.mark.parametrize(
    ("extra", "param", "said"),
    [
        ({"logprobs": 2}, "logprobs", "not supported"),
        ({"echo": True}, "echo", "not supported"),
        ({"stop": [""]}, "stop[0]", "at least 1 character"),
        ({"stop": ["ok", 5]}, "stop[1]", "valid string"),
        ({"stop": "x" * 101}, "stop", "at most 100 characters"),
        ({"prompt": [1, 2]}, "prompt[0]", "valid string"),
        ({"prompt": None}, "prompt", "valid string"),
    ],
)
def test_a_bad_field_is_named_as_the_client_wrote_it(lm_url, lm_run, extra, param, said) -> None:
    body = {"model": lm_run.resolve().name, "prompt": "to", "max_tokens": 1, **extra}
    status, answer = call(lm_url, "/v1/completions", body)
    assert (status, answer["error"]["param"]) == (422, param), answer
    assert (
        answer["error"]["message"].startswith(f"{param}: ") and said in answer["error"]["message"]
    )


def test_a_bad_message_content_is_named_as_the_client_wrote_it(lm_url, lm_run) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": 5}]}]
    body = {"model": lm_run.resolve().name, "messages": messages}
    status, answer = call(lm_url, "/v1/chat/completions", body)
    assert (status, answer["error"]["param"]) == (422, "messages[0].content[0].text"), answer


def test_a_list_of_bad_items_is_refused_at_the_first() -> None:
    """300,000 bad stop strings or prompts: one error each (pydantic built 300,000, seconds
    of the event loop)."""
    for field in ("stop", "prompt"):
        body = {"model": "m", "prompt": "to", field: [1] * 300_000}
        with pytest.raises(ValidationError) as refused:
            CompletionRequest.model_validate(body)
        assert refused.value.error_count() <= 2  # the list's first item, and the text branch
