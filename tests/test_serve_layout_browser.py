"""`imgidx serve` in headless Chromium at desktop (1280x900) and phone (390x844) size, issue 25: the grid lies
on the picture itself on every card (landscape, portrait, EXIF-turned), the phone header leaves room to type,
Esc keeps the query, box labels are readable and on the photo with and without a script, the photo page's
overlay choices work without a script, ranks stay contiguous as pages load, and the keyboard and screen
reader basics (one tab stop per card, alt text, the suggestion list as an ARIA combobox).

One server process and one browser for the module; the viewport and the script switch are set through the
DevTools protocol, so no test starts a browser of its own. Needs ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import re
import shutil

import pytest
import sqlalchemy as sa
from PIL import Image

from indexer.labels import FACE_CLASS
from query_helpers import SCHOOL_BUS, TABBY
from serve_process import CHROMEDRIVER, CHROMIUM, chromium, serving

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs headless Chromium: install chromium and chromium-driver"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install imgidx[test])")
pytest.importorskip("starlette", reason="needs the web extra: pip install 'imgidx[serve]'")

DESKTOP, PHONE = (1280, 900), (390, 844)
WAIT_S = 30
#: How far two rectangles may be apart, in CSS pixels: "agree to a pixel".
PIXEL = 1.0
#: name -> (stored size, EXIF orientation): the turned one is stored 900x600 and seen 600x900.
PHOTOS = {"wide.jpg": ((1200, 600), None), "tall.jpg": ((600, 1000), None), "turned.jpg": ((900, 600), 6),
          "square.jpg": ((500, 500), None), "wide-copy.jpg": ((1200, 600), None)}
#: Two faces on the wide photo: one at its top edge near the right, one in the middle (pixels of 1200x600).
FACES = [(1020, 0, 1190, 150, 0.99), (500, 250, 620, 400, 0.95)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from test_serve import real_index

    work = tmp_path_factory.mktemp("serve-layout")
    folder = work / "photos"
    folder.mkdir()
    for name, (size, orientation) in PHOTOS.items():
        exif = Image.Exif()
        if orientation:
            exif[0x0112] = orientation
        Image.new("RGB", size, (90, 90, 90)).save(folder / name, "JPEG", exif=exif.tobytes())
    shutil.copy(folder / "wide.jpg", folder / "wide-copy.jpg")
    # the wide photo and its copy first (ranks 1 and 2), the others after
    db = real_index(folder, {name: {4: {SCHOOL_BUS: 0.95 if name.startswith("wide") else 0.6}, 0: {TABBY: 0.3},
                                    8: {TABBY: 0.2}} for name in PHOTOS})
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:  # the size as seen (the indexer stores it after the EXIF orientation)
        conn.execute(sa.text("UPDATE images SET width = 600, height = 900 WHERE path LIKE '%turned.jpg'"))
        wide = conn.execute(sa.text("SELECT image_id FROM images WHERE path LIKE '%/wide.jpg'")).scalar()
        conn.execute(sa.text("INSERT INTO boxes VALUES (:i, :n, :c, :x0, :y0, :x1, :y1, :p)"), [
            {"i": wide, "n": n, "c": FACE_CLASS, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "p": p}
            for n, (x0, y0, x1, y1, p) in enumerate(FACES)])
    engine.dispose()
    with serving(db, work / "cache") as (url, _):
        yield url, wide


@pytest.fixture(scope="module")
def driver():
    with chromium("--window-size=1280,900", "--force-device-scale-factor=1") as browser:
        yield browser


def viewport(driver, size: tuple[int, int], scripts: bool = True) -> None:
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": not scripts})


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(lambda d: condition(d), message=what)


IMAGES_LOADED = "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
RECT = "const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height];"


def rect(driver, element) -> list[float]:
    return driver.execute_script(f"const e = arguments[0]; {RECT}", element)


def assert_same(picture: list[float], overlay: list[float], what: str) -> None:
    assert all(abs(a - b) <= PIXEL for a, b in zip(picture, overlay)), (what, picture, overlay)


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_grid_lies_on_the_picture_of_every_card_and_photo(server, driver, size):
    from selenium.webdriver.common.by import By

    base, _ = server
    viewport(driver, size)
    driver.get(base + "?q=school+bus")
    wait(driver, lambda d: d.execute_script(IMAGES_LOADED), "every thumbnail loaded")
    cards = driver.find_elements(By.CSS_SELECTOR, "#grid li.card")
    assert len(cards) == len(PHOTOS) - 1  # the copy folds into its original
    shapes = set()
    for card in cards:
        picture = rect(driver, card.find_element(By.CSS_SELECTOR, ".thumb img"))
        assert_same(picture, rect(driver, card.find_element(By.CSS_SELECTOR, ".cells")), card.text)
        shapes.add("landscape" if picture[2] > picture[3] + 1 else "portrait" if picture[3] > picture[2] + 1 else "square")
        assert picture[2] <= rect(driver, card)[2]  # the picture fits its card
    assert shapes == {"landscape", "portrait", "square"}
    photos = [card.find_element(By.CSS_SELECTOR, "a.thumb").get_attribute("href") for card in cards]
    for url in photos[:3]:  # the wide photo, then two of the tall, turned and square ones
        driver.get(url)
        wait(driver, lambda d: d.execute_script(IMAGES_LOADED), "the photo loaded")
        picture = rect(driver, driver.find_element(By.CSS_SELECTOR, "#frame img"))
        assert_same(picture, rect(driver, driver.find_element(By.CSS_SELECTOR, "#frame .overlay.matches")), url)
        assert picture[0] >= 0 and picture[0] + picture[2] <= size[0]  # on the screen


def test_the_phone_header_leaves_room_to_type_and_suggest(server, driver):
    from selenium.webdriver.common.by import By

    base, _ = server
    viewport(driver, PHONE)
    driver.get(base)
    box, folder = driver.find_element(By.ID, "q"), driver.find_element(By.ID, "folder")
    assert rect(driver, box)[2] >= 0.8 * PHONE[0]  # the query box takes the width
    assert rect(driver, folder)[2] >= 150
    assert driver.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]  # nothing sticks out
    box.send_keys("tabb")
    wait(driver, lambda d: d.find_element(By.ID, "suggestions").is_displayed(), "suggestions")
    listed = rect(driver, driver.find_element(By.ID, "suggestions"))
    assert listed[2] >= rect(driver, box)[2] - PIXEL
    line = driver.execute_script("return parseFloat(getComputedStyle(document.querySelector('#suggestions li')).lineHeight)")
    for item in driver.find_elements(By.CSS_SELECTOR, "#suggestions li"):
        assert item.size["height"] < 2 * line, item.text  # one line each, not wrapped in a narrow box


def test_escape_closes_the_suggestions_and_keeps_the_query(server, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, _ = server
    viewport(driver, DESKTOP)
    driver.get(base + "?q=school+bus")
    box = driver.find_element(By.ID, "q")
    box.send_keys(Keys.END, " AND tabb")
    wait(driver, lambda d: d.find_element(By.ID, "suggestions").is_displayed(), "suggestions")
    box.send_keys(Keys.ESCAPE)
    assert not driver.find_element(By.ID, "suggestions").is_displayed()
    assert box.get_attribute("value") == "school bus AND tabb"
    box.send_keys(Keys.ESCAPE)  # with no suggestions open
    assert box.get_attribute("value") == "school bus AND tabb"


def test_the_suggestion_list_is_an_aria_combobox(server, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, _ = server
    viewport(driver, DESKTOP)
    driver.get(base)
    box = driver.find_element(By.ID, "q")
    assert box.get_attribute("role") == "combobox" and box.get_attribute("aria-controls") == "suggestions"
    assert box.get_attribute("aria-expanded") == "false"
    box.send_keys("tabb")
    wait(driver, lambda d: d.find_element(By.ID, "suggestions").is_displayed(), "suggestions")
    assert box.get_attribute("aria-expanded") == "true"
    assert driver.find_element(By.ID, "suggestions").get_attribute("role") == "listbox"
    box.send_keys(Keys.ARROW_DOWN)
    option = driver.find_element(By.ID, box.get_attribute("aria-activedescendant"))
    assert option.get_attribute("role") == "option" and option.get_attribute("aria-selected") == "true"
    assert option.text == "tabby"
    box.send_keys(Keys.ESCAPE)
    assert box.get_attribute("aria-expanded") == "false" and not box.get_attribute("aria-activedescendant")


def _tags(driver) -> list[dict]:
    return driver.execute_script(
        "const picture = document.querySelector('#frame img').getBoundingClientRect();"
        "return [...document.querySelectorAll('#frame .bbox')].map(box => {"
        "  const tag = box.querySelector('.tag'), b = box.getBoundingClientRect(), t = tag.getBoundingClientRect();"
        "  const at = document.elementFromPoint(t.left + t.width / 2, t.top + t.height / 2);"
        "  return {picture: [picture.left, picture.top, picture.right, picture.bottom],"
        "          box: [b.left, b.top, b.right, b.bottom], tag: [t.left, t.top, t.right, t.bottom],"
        "          text: tag.textContent, background: getComputedStyle(tag).backgroundColor,"
        "          colour: getComputedStyle(tag).color, seen: tag.contains(at)}; });")


@pytest.mark.parametrize("scripts", [True, False], ids=["script", "no-script"])
def test_box_labels_are_readable_and_on_the_photo(server, driver, scripts):
    base, wide = server
    viewport(driver, DESKTOP, scripts=scripts)
    driver.get(base + f"photo/{wide}")
    wait(driver, lambda d: d.find_elements("css selector", "#frame img"), "the photo page")
    wait(driver, lambda d: d.execute_script("return document.querySelector('#frame img').complete"), "the photo loaded")
    tags = _tags(driver)
    assert len(tags) == len(FACES)
    for tag, (x0, y0, x1, y1, _) in zip(tags, FACES):
        left, top, right, bottom = tag["picture"]
        scale = (right - left) / PHOTOS["wide.jpg"][0][0]
        assert [round(v) for v in tag["box"]] == [round(left + scale * x0), round(top + scale * y0),
                                                  round(left + scale * x1), round(top + scale * y1)], tag
        t_left, t_top, t_right, t_bottom = tag["tag"]
        assert left - PIXEL <= t_left and t_right <= right + PIXEL and top - PIXEL <= t_top and t_bottom <= bottom + PIXEL, tag
        assert tag["seen"], tag  # nothing covers it
        alpha = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", tag["background"]).group(4)
        assert float(alpha or 1) >= 0.75 and tag["colour"] == "rgb(255, 255, 255)", tag  # white on near-black
        assert re.fullmatch(r"face \d+%", tag["text"])
    viewport(driver, DESKTOP)


def test_the_overlay_choices_and_a_label_s_scores_work_without_a_script(server, driver):
    from selenium.webdriver.common.by import By

    base, _ = server
    viewport(driver, DESKTOP, scripts=False)
    try:
        driver.get(base + "?q=school+bus")
        driver.find_element(By.CSS_SELECTOR, "#grid li.card a.thumb").click()
        wait(driver, lambda d: d.find_elements(By.ID, "frame"), "the photo page")
        assert driver.find_element(By.ID, "frame").get_attribute("data-mode") == "matches"
        driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="classmap"]').click()
        driver.find_element(By.CSS_SELECTOR, "#label-form button[type=submit]").click()
        wait(driver, lambda d: "mode=classmap" in d.current_url, "the page with the choice")
        assert "q=school+bus" in driver.current_url and "rank=1" in driver.current_url
        assert driver.find_element(By.ID, "frame").get_attribute("data-mode") == "classmap"
        assert driver.find_element(By.CSS_SELECTOR, "#frame .overlay.classmap").is_displayed()
        label = driver.find_element(By.ID, "label")
        label.send_keys("school bus")
        driver.find_element(By.CSS_SELECTOR, "#label-form button[type=submit]").click()
        wait(driver, lambda d: "label=school+bus" in d.current_url, "where the label scores, as a page")
        assert driver.find_element(By.ID, "frame").get_attribute("data-mode") == "heat"  # a page, not JSON
        center = driver.find_element(By.CSS_SELECTOR, '#frame .overlay.heat .cell[data-cell="center"]')
        assert center.value_of_css_property("background-color") != "rgba(255, 40, 0, 0)"
        assert re.fullmatch(r"\d+%", center.text)
    finally:
        viewport(driver, DESKTOP)


def test_ranks_stay_contiguous_as_pages_load_and_copies_drop(server, driver):
    from selenium.webdriver.common.by import By

    base, _ = server
    viewport(driver, PHONE)
    driver.get(base + "?q=school+bus&n=1")  # the copy of wide.jpg comes on a page of its own, and is dropped
    for _ in range(40):
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        if not driver.find_elements(By.CSS_SELECTOR, "#grid li.more"):
            break
        wait(driver, lambda d: d.execute_script("return !document.querySelector('#grid li.more') || "
                                                "document.querySelector('#grid li.more').isConnected"), "a page")
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "#grid li.more"), "every page")
    ranks = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#grid li.card .rank")]
    assert ranks == [f"#{n}" for n in range(1, len(PHOTOS))]


def test_one_tab_stop_per_card_and_alt_text_of_the_labels(server, driver):
    base, _ = server
    viewport(driver, DESKTOP)
    driver.get(base + "?q=school+bus")
    stops = driver.execute_script(
        "return [...document.querySelectorAll('#grid li.card')].map(card => [...card.querySelectorAll("
        "'a[href], button, input, select, textarea, [tabindex]')].filter(e => e.tabIndex >= 0).length)")
    assert stops == [1] * (len(PHOTOS) - 1)
    alts = driver.execute_script("return [...document.querySelectorAll('#grid img')].map(i => i.alt)")
    assert alts == ["school bus, tabby"] * (len(PHOTOS) - 1)
    assert driver.execute_script("return document.querySelectorAll('h1').length") == 1
