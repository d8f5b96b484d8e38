"""`imgidx serve` end to end: a real server process over composites of real photos indexed with
EfficientNet-Lite0, driven by headless Chromium as a user would: type a query (with a completion), see the
expected photos with the right cells highlighted, scroll to load more, open a photo and switch its overlay,
type a broken query and see the caret.

Needs the Debian packages ``chromium`` and ``chromium-driver``; skipped without them.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner

from indexer.cli import cli
from indexer.geometry import CELL_NAMES
from query.parser import caret_context
from query_truth import T, composite_set, write_set
from serve_process import CHROMEDRIVER, CHROMIUM, chromium, serving

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs headless Chromium: install chromium and chromium-driver"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install imgidx[test])")
pytest.importorskip("starlette", reason="needs the web extra: pip install 'imgidx[serve]'")

#: 12 composites, 8 of them with the cat (chelsea) somewhere; one of those also as an identical copy.
SAMPLES = composite_set(12, seed=4, empty=1, pairs=4)
CAT = T("cat")
PAGE = 4  # matches per page, so that the 9 cat photos take three pages
#: A phone-sized window: one column of cards, so a page of them reaches well below the fold and the next
#: page loads only on scrolling.
WINDOW = "520,700"
WAIT_S = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`imgidx serve` on a free port over the composites, indexed by `imgidx index`; stopped with Ctrl-C."""
    work = tmp_path_factory.mktemp("serve-e2e")
    folder = work / "photos"
    write_set(folder, SAMPLES)
    copied = next(s for s in SAMPLES if "chelsea" in s.cells.values())
    (folder / "copies").mkdir()
    shutil.copy(folder / copied.filename, folder / "copies" / copied.filename)
    db = str(work / "index.db")
    done = CliRunner().invoke(cli, ["index", str(folder), "--db", db, "--model", "efficientnet-lite0", "-q"])
    assert done.exit_code == 0, done.output
    with serving(db, work / "cache") as (url, process):
        yield url, copied
    assert process.stderr.read() == "stopped\n"


@pytest.fixture(scope="module")
def browser():
    with chromium(f"--window-size={WINDOW}") as driver:
        yield driver


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(lambda d: condition(d), message=what)


def cards(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid li.card')].map(card => ({"
        "  name: card.querySelector('a.name').textContent, hash: card.dataset.hash,"
        "  copies: card.querySelector('.copies') ? card.querySelector('.copies').textContent : '',"
        "  hits: [...card.querySelectorAll('.cell.hit')].map(cell => cell.dataset.cell),"
        "  loaded: card.querySelector('img').complete && card.querySelector('img').naturalWidth > 0}));"
    )


def test_search_scroll_open_a_photo_and_a_broken_query(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, copied = server
    driver = browser
    driver.get(base + f"?n={PAGE}")

    # type a query, with the label completed from the vocabulary
    box = driver.find_element(By.ID, "q")
    box.send_keys("tabb")
    wait(driver, lambda d: d.find_element(By.ID, "suggestions").is_displayed(), "completions shown")
    suggestions = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#suggestions li")]
    assert suggestions[0] == "tabby"
    box.send_keys(Keys.BACKSPACE * 4 + "cat")
    wait(driver, lambda d: box.get_attribute("value") == "cat", "typed")
    box.send_keys(Keys.ENTER)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#grid li.card"), "first page of matches")
    assert parse_qs(urlparse(driver.current_url).query) == {"q": ["cat"], "n": [str(PAGE)]}  # bookmarkable
    time.sleep(1)
    first_page = cards(driver)
    assert 0 < len(first_page) <= PAGE and driver.find_elements(By.CSS_SELECTOR, "#grid li.more")

    # scroll until every match is there
    for _ in range(20):
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        time.sleep(0.5)
        if not driver.find_elements(By.CSS_SELECTOR, "#grid li.more"):
            break
    shown = cards(driver)
    assert len(shown) > PAGE, "scrolling loaded no more matches"

    # the expected photos, each content once, with the cat's cells highlighted (and at most its neighbours)
    by_file = {s.filename: s for s in SAMPLES}
    expected = {s.filename for s in SAMPLES if CAT.where(s)}
    assert sorted(c["name"] for c in shown) == sorted(expected)
    assert len({c["hash"] for c in shown}) == len(shown)
    assert [c["copies"] for c in shown if c["name"] == copied.filename] == ["2 copies"]
    for card in shown:
        hits = {CELL_NAMES.index(cell) for cell in card["hits"]}
        sample = by_file[card["name"]]
        assert CAT.where(sample) <= hits <= replace(CAT, leak=True).where(sample), card
    driver.execute_script("window.scrollTo(0, 0)")
    wait(driver, lambda d: cards(d)[0]["loaded"], "the first thumbnail loaded")

    # open a photo: the query's cells on it, then the class map, a chosen label, and no overlay
    first = shown[0]
    driver.find_element(By.CSS_SELECTOR, "#grid li.card a.thumb").click()
    wait(driver, lambda d: d.find_elements(By.ID, "frame"), "the photo page")
    frame = driver.find_element(By.ID, "frame")
    wait(driver, lambda d: d.execute_script("const i = document.querySelector('#frame img'); return i.complete && i.naturalWidth > 0"),
         "the large photo loaded")

    def visible_overlays() -> list[str]:
        return driver.execute_script(
            "return [...document.querySelectorAll('#frame .overlay')].filter(o => getComputedStyle(o).display !== 'none')"
            ".map(o => o.classList[1]);"
        )

    assert frame.get_attribute("data-mode") == "matches" and visible_overlays() == ["matches"]
    hits = [c.get_attribute("data-cell") for c in driver.find_elements(By.CSS_SELECTOR, "#frame .overlay.matches .cell.hit")]
    assert sorted(hits) == sorted(first["hits"])
    driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="classmap"]').click()
    assert visible_overlays() == ["classmap"]
    colours = driver.execute_script(
        "return [...document.querySelectorAll('#frame .overlay.classmap .cell')].map(c => getComputedStyle(c).backgroundColor)")
    assert all(colour not in ("rgba(0, 0, 0, 0)", "transparent") for colour in colours)
    label = driver.find_element(By.ID, "label")
    label.send_keys("cat")
    label.send_keys(Keys.ENTER)
    wait(driver, lambda d: frame.get_attribute("data-mode") == "heat", "the label's scores")
    scored = driver.execute_script(
        "return [...document.querySelectorAll('#frame .overlay.heat .cell')].map(c => c.querySelector('.tag').hidden ? null :"
        " Number(c.querySelector('.tag').textContent.replace('%', '')))")
    best = max(range(9), key=lambda c: scored[c] or 0)
    assert best in CAT.where(by_file[first["name"]]) and scored[best] >= 30
    driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="off"]').click()
    assert visible_overlays() == []

    # a broken query: the message, and the caret under its position
    box = driver.find_element(By.ID, "q")
    box.clear()
    box.send_keys("cat AND (" + Keys.ENTER)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".error .caret"), "the error")
    assert driver.find_element(By.CSS_SELECTOR, ".error .message").text == (
        "column 10: expected a label after '(', found the end of the query")
    assert driver.find_element(By.CSS_SELECTOR, ".error .caret").get_attribute("textContent") == caret_context("cat AND (", 9)
    assert driver.execute_script("return document.activeElement.id + ':' + document.activeElement.selectionStart") == "q:9"
