"""The explorer page in a real browser: Debian's chromium, headless, driven by Playwright.

Not skipped where chromium is missing: it fails, naming the install step (`make browser`).
"""

import shutil

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as root in a container, with no network: no sandbox, and no calls home at start
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if shutil.which("chromium") is None:
        pytest.fail("the explorer's test needs Debian's chromium: run `make browser`")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def cells(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#heatmap .cell",
        "els => els.map(e => ({row: +e.dataset.row, col: +e.dataset.col,"
        " weight: +e.dataset.weight, title: e.title}))",
    )


def test_the_explorer_translates_and_shows_cross_attention(browser, translation_server) -> None:
    page = browser.new_page()
    page.goto(translation_server.url + "/")
    page.wait_for_selector("body[data-ready=encoder_decoder]")
    assert not page.is_hidden("#translate-panel") and page.is_hidden("#generate-panel")
    page.fill("#source", "a man sees the dog")
    page.fill("#beam", "3")
    page.click("#translate")
    page.wait_for_selector("#heatmap .cell")
    translation = page.text_content("#translation")
    _, answer = translation_server.call(
        "/v1/translate", {"text": ["a man sees the dog"], "beam": 3, "n_best": 3}
    )
    assert translation == answer["translations"][0]["text"] != ""
    assert page.eval_on_selector_all("#nbest li", "els => els.length") == len(
        answer["translations"][0]["n_best"]
    )
    body = {"text": "a man sees the dog", "target": translation}
    maps = translation_server.call("/v1/attention", body)[1]["maps"]

    for kind, layer, head in (
        ("cross", 0, 0),
        ("cross", 0, 1),
        ("encoder", 0, 1),
        ("decoder", 0, 0),
    ):
        page.select_option("#kind", value=kind)
        page.select_option("#layer", value=str(layer))
        page.select_option("#head", value=str(head))
        grid = page.eval_on_selector("#heatmap", "e => ({...e.dataset})")
        assert grid == {"kind": kind, "layer": str(layer), "head": str(head)}
        [expected] = [m for m in maps if m["kind"] == kind and m["layer"] == layer]
        shown = cells(page)
        assert len(shown) == len(expected["rows"]) * len(expected["cols"])
        for c in shown:
            assert c["weight"] == pytest.approx(expected["weights"][head][c["row"]][c["col"]])
        hover = shown[-1]
        assert hover["title"].endswith(f"{hover['weight']:.3f}")
        if kind == "cross":  # output tokens down, source tokens across
            assert page.eval_on_selector_all("#source-tokens span", "e => e.length") == len(
                expected["cols"]
            )
            assert page.eval_on_selector_all("#output-tokens span", "e => e.length") == len(
                expected["rows"]
            )
    assert page.text_content("#error") == ""
    page.close()


def test_the_explorer_streams_coloured_tokens(browser, lm_server) -> None:
    page = browser.new_page()
    page.goto(lm_server.url + "/")
    page.wait_for_selector("body[data-ready=decoder_only]")
    page.fill("#prompt", "to be")
    page.fill("#max-new-tokens", "30")
    page.fill("#temperature", "0")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#generated span').length >= 25")
    page.wait_for_timeout(300)
    body = {"prompt": "to be", "max_new_tokens": 30, "temperature": 0}
    text = lm_server.call("/v1/generate", body)[1]["text"]
    assert page.text_content("#generated") == text
    probs = page.eval_on_selector_all("#generated span", "els => els.map(e => +e.dataset.p)")
    assert all(0 < p <= 1 for p in probs)
    page.close()


def test_the_explorer_classifies_with_attention(browser, classifier_server) -> None:
    page = browser.new_page()
    page.goto(classifier_server.url + "/")
    page.wait_for_selector("body[data-ready=encoder_classifier]")
    page.fill("#text", "a lovely film")
    page.click("#classify")
    page.wait_for_selector("#heatmap .cell")
    answer = classifier_server.call("/v1/classify", {"text": ["a lovely film"]})[1]["labels"][0]
    rows = page.eval_on_selector_all("#probabilities li", "els => els.map(e => e.textContent)")
    assert len(rows) == len(answer["probabilities"])
    assert any(r.startswith(answer["label"]) and "\u2190" in r for r in rows)
    page.close()


def test_the_explorer_shows_tags_over_the_words(browser, tagger_server) -> None:
    page = browser.new_page()
    page.goto(tagger_server.url + "/")
    page.wait_for_selector("body[data-ready=encoder_tagger]")
    page.fill("#sentence", "the cat sat on a mat")
    page.click("#tag")
    page.wait_for_selector("#heatmap .cell")
    [answer] = tagger_server.call("/v1/tag", {"text": ["the cat sat on a mat"]})[1]["sentences"]
    tags = page.eval_on_selector_all("#tagged b", "els => els.map(e => e.textContent)")
    words = page.eval_on_selector_all("#tagged span", "els => els.map(e => e.lastChild.data)")
    assert (words, tags) == (answer["words"], answer["tags"])
    page.close()
