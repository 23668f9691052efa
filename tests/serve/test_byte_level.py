"""A byte-level tokenizer's characters split across tokens, through a real server."""

from aiayn.serve.client import Server
from tests.byte_level import SPLIT, byte_level_tokenizer, rigged_run


def test_a_character_split_across_tokens_streams_whole(tmp_path) -> None:
    """/v1/generate answers the decoding of all the ids, and its stream gives a character
    only once its last byte has come: no event holds U+FFFD."""
    run = rigged_run(tmp_path / "run", byte_level_tokenizer(), "the", SPLIT)
    body = {"prompt": "the", "max_new_tokens": 20, "temperature": 0}
    with Server(run) as server:
        assert server.call("/v1/generate", body) == (200, {"text": SPLIT})
        client = server.client()
        events = list(client.events("/v1/generate", {**body, "stream": True}))
        client.close()
    pieces = [data["text"] for name, data in events if name == "token"]
    assert "".join(pieces) == SPLIT and not any("\ufffd" in p for p in pieces)
    assert "é" in pieces and "😀" in pieces
    assert events[-1] == ("done", {"text": SPLIT})
