"""The HTML gallery in headless Chromium: thumbnails load, highlighted cells sit over the matched thirds of
each picture (by geometry and by the pixels drawn: an outline, the photo's colours kept inside), path links
wrap only after a folder separator, identical copies make one card, and a file named with <script> shows
as text.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (the CI script installs them); skipped
without them.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from indexer.cli import cli
from query_helpers import CRANE_MACHINE, FLOWERPOT, SCHOOL_BUS, make_index

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs headless Chromium: install the Debian packages chromium and chromium-driver",
)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install imgidx[test])")

EVIL = "<script>alert(1)<.jpg"
#: A copy of wide.jpg deep in folders with hyphenated names, and a file name too long for a card's width.
COPY = ("holidays-in-the-mountains-2019", "camera-roll-backup-from-the-old-phone",
        "IMG_20190812_143512_panorama_of_the_whole_valley_seen_from_the_ridge.jpg")
CELL_NAMES = ["top-left", "top-center", "top-right", "center-left", "center", "center-right", "bottom-left",
              "bottom-center", "bottom-right"]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")

    def photo(name: str, size: tuple[int, int], orientation: int | None = None) -> str:
        exif = Image.Exif()
        if orientation:
            exif[0x0112] = orientation
        Image.new("RGB", size, (128, 128, 128)).save(folder / name, "JPEG", exif=exif.tobytes())
        return str(folder / name)

    wide = photo("wide.jpg", (1200, 600))
    copy = folder.joinpath(*COPY)
    copy.parent.mkdir(parents=True)
    shutil.copyfile(wide, copy)
    images = {
        wide: {4: {SCHOOL_BUS: 0.9}, 0: {FLOWERPOT: 0.6}},
        str(copy): {4: {SCHOOL_BUS: 0.9}, 0: {FLOWERPOT: 0.6}},
        photo("tall.jpg", (500, 1000)): {4: {SCHOOL_BUS: 0.8}, 7: {FLOWERPOT: 0.5}, 8: {FLOWERPOT: 0.4}},
        photo("turned.jpg", (900, 600), orientation=6): {4: {SCHOOL_BUS: 0.7}, 2: {FLOWERPOT: 0.3}},
        photo(EVIL, (400, 400)): {4: {SCHOOL_BUS: 0.6}, 6: {FLOWERPOT: 0.25}},
        str(folder / "moved-away.jpg"): {4: {SCHOOL_BUS: 0.5}, 5: {FLOWERPOT: 0.9}, 8: {CRANE_MACHINE: 0.9}},
    }
    db = folder / "index.db"
    make_index(db, images, copies={str(copy): wide}).dispose()
    query = ["school bus in center", "AND", "flower pot", "--db", str(db), "--min-score", "0.2"]  # as laid out
    page = folder / "gallery.html"
    runner = CliRunner()
    result = runner.invoke(cli, ["query", *query, "--html", str(page)])
    assert result.exit_code == 0, result.output
    matches = [json.loads(line) for line in runner.invoke(cli, ["query", *query, "--json"]).stdout.splitlines()]
    return page, matches


def _cards(matches: list[dict]) -> list[list[dict]]:
    """The JSON Lines (one per path) grouped as the gallery groups them: by content, in rank order."""
    cards: dict[str, list[dict]] = {}
    for match in matches:
        cards.setdefault(match["sha256"], []).append(match)
    return list(cards.values())


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--force-device-scale-factor=1", "--allow-file-access-from-files"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def loaded(browser, gallery):
    page, matches = gallery
    browser.get(page.as_uri())
    return browser, _cards(matches)


def test_thumbnails_load(loaded):
    driver, cards = loaded
    states = driver.execute_script(
        "return [...document.querySelectorAll('li.match')].map(li => {"
        "  const img = li.querySelector('.thumb img');"
        "  return img ? [img.complete, img.naturalWidth, img.naturalHeight] : null; });"
    )
    assert len(states) == len(cards) == 5
    loaded_images = [s for s in states if s is not None]
    assert len(loaded_images) == 4  # the moved file has a placeholder instead
    assert all(complete and width > 0 and height > 0 for complete, width, height in loaded_images)
    assert sorted((w, h) for _, w, h in loaded_images) == [(160, 320), (213, 320), (320, 160), (320, 320)]


def test_highlighted_cells_cover_the_matched_thirds(loaded):
    driver, cards = loaded
    boxes = driver.execute_script(
        "return [...document.querySelectorAll('li.match')].map(li => {"
        "  const pic = li.querySelector('.thumb img, .thumb .missing').getBoundingClientRect();"
        "  return {path: li.querySelector('a.path').textContent, pic: [pic.x, pic.y, pic.width, pic.height],"
        "    cells: [...li.querySelectorAll('.cell')].map(c => { const r = c.getBoundingClientRect();"
        "      return [c.dataset.cell, c.classList.contains('hit'), [r.x, r.y, r.width, r.height],"
        "              getComputedStyle(c).backgroundColor]; })};"
        "});"
    )
    assert [b["path"] for b in boxes] == [card[0]["path"] for card in cards]
    for box, (match, *_) in zip(boxes, cards):
        expected = {cell for term in match["terms"] for cell in term["cells"]}
        assert {name for name, hit, _, _ in box["cells"] if hit} == expected, box["path"]
        x, y, w, h = box["pic"]
        assert w > 100 and h > 100
        for name, hit, (cx, cy, cw, ch), background in box["cells"]:
            row, col = divmod(CELL_NAMES.index(name), 3)
            assert cx == pytest.approx(x + col * w / 3, abs=1.5) and cy == pytest.approx(y + row * h / 3, abs=1.5)
            assert cw == pytest.approx(w / 3, abs=1.5) and ch == pytest.approx(h / 3, abs=1.5)
            assert (background != "rgba(0, 0, 0, 0)") == hit, (name, background)


def test_matched_cells_are_outlined_and_keep_the_photos_colours(loaded):
    """Over a uniform grey photo, a matched cell has an orange outline along its edge and stays nearly grey
    inside (a light fill, not a tint that hides the photo); the other cells stay grey."""
    from selenium.webdriver.common.by import By

    driver, cards = loaded
    styles = driver.execute_script(
        "return [...document.querySelectorAll('.cell.hit')].map(c => { const s = getComputedStyle(c);"
        "  return [s.outlineStyle, parseFloat(s.outlineWidth), s.backgroundColor]; });"
    )
    assert len(styles) == sum(len({c for t in card[0]["terms"] for c in t["cells"]}) for card in cards)
    for outline, outline_width, background in styles:
        alpha = float(re.fullmatch(r"rgba\(\d+, \d+, \d+, ([\d.]+)\)", background).group(1))
        assert outline == "solid" and outline_width >= 2 and alpha <= 0.15
    first = driver.find_elements(By.CSS_SELECTOR, "li.match .thumb")[0]
    shot = Image.open(io.BytesIO(first.screenshot_as_png)).convert("RGB")
    width, height = shot.size
    expected = {cell for term in cards[0][0]["terms"] for cell in term["cells"]}
    for index, name in enumerate(CELL_NAMES):
        row, col = divmod(index, 3)
        r, g, b = shot.getpixel((int((col + 0.4) * width / 3), int((row + 0.6) * height / 3)))
        assert abs(r - 128) < 30 and abs(b - 128) < 30, (name, (r, g, b))  # the photo's grey shows through
        r, g, b = shot.getpixel((int(col * width / 3) + 2, int((row + 0.6) * height / 3)))  # the cell's left edge
        assert (r - b > 120) == (name in expected), (name, (r, g, b))


def test_path_links_wrap_only_after_a_folder_separator(loaded):
    """A line of a path ends after a "/", never at a hyphen inside a folder's name; only a name wider than
    the card by itself wraps inside, and stays within the card."""
    driver, _ = loaded
    links = driver.execute_script(
        "return [...document.querySelectorAll('a.path')].map(a => {"
        "  const card = a.closest('li.match').getBoundingClientRect();"
        "  return [...a.querySelectorAll('.part')].map(part => {"
        "    const box = part.getBoundingClientRect(), tops = [], text = part.firstChild;"
        "    for (let i = 0; i < text.length; i++) {"
        "      const range = document.createRange(); range.setStart(text, i); range.setEnd(text, i + 1);"
        "      tops.push(Math.round(range.getBoundingClientRect().top)); }"
        "    return {text: text.data, tops: tops, right: box.right, cardRight: card.right}; }); });"
    )
    assert len(links) == 6
    assert all("".join(part["text"] for part in link).count("/") == len(link) - 1 for link in links)
    breaks_after_a_slash, inside = 0, []
    for link in links:
        for part, following in zip(link, link[1:]):
            assert part["text"].endswith("/")
            breaks_after_a_slash += following["tops"][0] != part["tops"][-1]
        inside += [part["text"] for part in link if len(set(part["tops"])) > 1]
        assert all(part["right"] <= part["cardRight"] for part in link)
    assert breaks_after_a_slash >= 6  # each of these long temporary paths takes several lines
    assert inside == [COPY[-1]]


def test_identical_copies_make_one_card_listing_every_path(loaded):
    from selenium.webdriver.common.by import By

    driver, cards = loaded
    copied = [card for card in cards if len(card) > 1]
    assert [[m["path"] for m in card] for card in copied] == [
        [str(Path(copied[0][1]["path"]).parent.joinpath(*COPY)), copied[0][1]["path"]]
    ]
    items = driver.find_elements(By.CSS_SELECTOR, "li.match")
    assert [item.get_attribute("data-copies") for item in items] == [str(len(card)) for card in cards]
    links = [a.text for a in items[0].find_elements(By.CSS_SELECTOR, "a.path")]
    assert links == [m["path"] for m in copied[0]]
    assert items[0].find_element(By.CSS_SELECTOR, ".copies").text == "2 copies"


def test_script_in_a_file_name_shows_as_text(loaded):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    driver, _ = loaded
    assert driver.execute_script("return document.scripts.length") == 0
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
    paths = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a.path")]
    assert any(p.endswith("/" + EVIL) for p in paths)
    evil = [a for a in driver.find_elements(By.CSS_SELECTOR, "a.path") if a.text.endswith(EVIL)][0]
    assert Path(evil.get_attribute("href").removeprefix("file://")).name == "%3Cscript%3Ealert%281%29%3C.jpg"


def test_unreadable_original_gets_a_placeholder_with_its_grid(loaded):
    from selenium.webdriver.common.by import By

    driver, _ = loaded
    missing = driver.find_elements(By.CSS_SELECTOR, ".thumb .missing")
    assert len(missing) == 1 and missing[0].text.startswith("image not readable: ") and missing[0].text.endswith(": no such file")
