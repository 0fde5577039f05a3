"""The /ui page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright),
against a real `recsys serve` process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

# Shared session fixtures (api_world, behaviour_store, api_server).
pytest_plugins = ["tests.api_support"]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"]


def chromium_path() -> str:
    """Debian's Chromium; in CI its absence is a failure, elsewhere a skip with the reason."""
    path = os.environ.get("RECSYS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        message = "Chromium is not installed (install.sh installs it: apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_page_looks_up_an_item_and_switches_modes(browser, behaviour_store, api_server) -> None:
    base = api_server
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(base + "/ui")

    # Samples from the index, each with its picture.
    page.wait_for_function("document.querySelectorAll('#samples .card').length === 12")
    assert f"version {behaviour_store[1]}" in page.inner_text("#version")

    # Clicking a sample looks it up: its own card, then its neighbours with scores and images.
    page.click('#samples .card[data-item-id="item0004"]')
    page.wait_for_function("document.querySelectorAll('#results .card').length === 10")
    expected = httpx.get(base + "/v1/items/item0004/similar", params={"k": 10, "mode": "visual"}).json()
    shown = page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.itemId)")
    assert shown == [r["item_id"] for r in expected["results"]]
    first_score = page.inner_text("#results .card .score")
    assert first_score == f"score {expected['results'][0]['score']:.3f}"
    assert page.get_attribute("#query .card", "data-item-id") == "item0004"
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#query img, #results img'))"
        ".every(img => img.complete && img.naturalWidth > 0)")
    natural = page.eval_on_selector("#query img", "img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [160, 160]  # the catalogue's own picture, served by /v1/items/{id}/image

    # Switching the mode asks again and shows what the behaviour model answers.
    page.check('input[name="mode"][value="behaviour"]')
    page.wait_for_function("document.querySelector('#status').textContent.includes('(behaviour)')")
    assert "mode=behaviour" in page.url
    answer = httpx.get(base + "/v1/items/item0004/similar", params={"k": 10, "mode": "behaviour"}).json()
    behaviour_ids = [r["item_id"] for r in answer["results"]]
    page.wait_for_function(f"document.querySelectorAll('#results .card').length === {len(behaviour_ids)}")
    assert page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.itemId)") \
        == behaviour_ids != shown

    # A neighbour's card is a link to its own neighbours.
    second = behaviour_ids[0]
    page.click(f'#results .card[data-item-id="{second}"]')
    page.wait_for_function(
        f"document.querySelector('#query .card')?.dataset.itemId === '{second}'")
    assert page.input_value("#item-id") == second

    # An unknown id shows the API's message as an error.
    page.fill("#item-id", "no-such-item")
    page.click("#search")
    page.wait_for_function("document.querySelector('#status').className === 'error'")
    assert "unknown item_id 'no-such-item'" in page.inner_text("#status")
    assert page.eval_on_selector_all("#results .card", "cards => cards.length") == 0
    assert problems == []
    page.close()
