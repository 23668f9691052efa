import socket

import pytest
import torch

from aiayn.cli import main
from aiayn.serve.engines import LanguageEngine, TranslationEngine
from aiayn.serve.server import is_loopback


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "{missing}"], "not a run directory"),
        (["--port", "70000"], "--port 70000 must be in [0, 65535]"),
        (["--max-queue", "0"], "--max-queue 0 must be >= 1"),
        (["--window-ms", "nan"], "--window-ms nan must be in [0, 1000]"),
        (["--max-rows", "0"], "--max-rows 0 must be in [1, 4096]"),
        (["--time-limit", "nan"], "--time-limit nan must be in (0, 86400] seconds"),
        (["--device", "tpu"], "--device='tpu'"),
        (["--cuda-graph", "--device", "cpu"], "--cuda-graph needs a CUDA device; --device gave"),
    ],
)
def test_bad_serve_arguments_are_one_line_errors(translation_run, tmp_path, capsys, argv, message):
    argv = [a.replace("{missing}", str(tmp_path / "none")) for a in argv]
    if "--model" not in argv:
        argv = ["--model", str(translation_run), *argv]
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aiayn serve: error:") and message in err[-1], err


def test_a_port_in_use_is_named(translation_run, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(translation_run), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_only_loopback_addresses_pass_without_a_warning() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.3.0.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.2", "::", "example.org"]))


def test_cuda_graph_serves_translation_models_only(translation_run, lm_run) -> None:
    """A translation engine's searches take the static-shape step (eager on this CPU) with the
    same answers (their scores to rounding: the eager step's attention over few cached keys
    runs other kernels); a language model's engine refuses the flag by name."""
    cpu, quiet = torch.device("cpu"), lambda _: None
    engine = TranslationEngine.load(translation_run, None, cpu, quiet)
    texts = ["a man sees the dog", "a woman sleeps"]

    def answers() -> list:
        job = engine.translate_job(texts, 4, 0.6, 2)
        return job.run(job.items)

    eager = answers()
    engine.use_cuda_graph()
    graph = answers()
    assert engine.translator.graph and len(graph) == len(eager)
    for g, e in zip(graph, eager, strict=True):
        assert g["text"] == e["text"] and g["score"] == pytest.approx(e["score"], abs=1e-5)
        assert [t for t, _ in g["n_best"]] == [t for t, _ in e["n_best"]]
        assert [s for _, s in g["n_best"]] == pytest.approx([s for _, s in e["n_best"]], abs=1e-5)
    with pytest.raises(ValueError, match="this run is a decoder_only model"):
        LanguageEngine.load(lm_run, None, cpu, quiet).use_cuda_graph()
