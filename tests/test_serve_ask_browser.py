"""Help to ask in headless Chromium (issue 25): the 3x3 cell picker and the confidence slider of a term
write the query text, the text the search then runs; a search that finds nothing gets its looser queries. A real `imgidx serve` process over the small index
of tests/test_serve.py (no model). Needs the Debian packages ``chromium`` and ``chromium-driver``."""

from __future__ import annotations

import pytest

from test_serve import library  # noqa: F401 (a fixture)
from test_serve_browser import wait
from query import DEFAULT_MIN_SCORE
from serve_process import CHROMEDRIVER, CHROMIUM, chromium, serving

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs headless Chromium: install chromium and chromium-driver")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install imgidx[test])")
STEP = 0.05  # the slider's step


def test_the_cell_picker_and_the_slider_write_the_query_text(library, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, db = library
    with serving(db, tmp_path / "cache") as (base, _), chromium("--window-size=1280,900") as driver:
        driver.get(base + "?q=school+bus")
        box = driver.find_element(By.ID, "q")
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#ask .picker button"), "the picker")
        cell = lambda n: driver.find_element(By.CSS_SELECTOR, f'#ask .picker button[data-cell="{n}"]')  # noqa: E731

        def press(n: int) -> None:
            """Click cell ``n``: the picker is drawn again when the text changes, so a button found just before may
            be gone (on a busy machine); a click on a button gone happened nowhere, and is tried again."""
            def pressed(_driver) -> bool:
                try:
                    cell(n).click()
                except StaleElementReferenceException:
                    return False
                return True
            wait(driver, pressed, f"cell {n} pressed")

        def nudge() -> None:
            """One step right on the slider, found anew each try: it is drawn again with the picker, like a cell."""
            def nudged(_driver) -> bool:
                try:
                    driver.find_element(By.CSS_SELECTOR, "#ask input[type=range]").send_keys(Keys.ARROW_RIGHT)
                except StaleElementReferenceException:
                    return False
                return True
            wait(driver, nudged, "the slider moved")
        assert [b.get_attribute("aria-pressed") for b in driver.find_elements(By.CSS_SELECTOR, "#ask .picker button")] == ["false"] * 9

        press(0)
        wait(driver, lambda d: box.get_attribute("value") == "school bus in top-left", "a cell written")
        press(1)  # two cells: no region yet, the text stays
        wait(driver, lambda d: cell(1).get_attribute("aria-pressed") == "true", "pending cell shown")
        assert box.get_attribute("value") == "school bus in top-left"
        press(2)  # the whole top row
        wait(driver, lambda d: box.get_attribute("value") == "school bus in top row", "a row written")

        slider = driver.find_element(By.CSS_SELECTOR, "#ask input[type=range]")
        assert slider.get_attribute("value") == str(round(DEFAULT_MIN_SCORE * 100))
        nudge()
        up = round(DEFAULT_MIN_SCORE + STEP, 2)
        wait(driver, lambda d: box.get_attribute("value") == f"school bus in top row >= {up:g}", "the slider written")
        nudge()
        wait(driver, lambda d: box.get_attribute("value") == f"school bus in top row >= {round(up + STEP, 2):g}",
             "the slider written again")

        box.send_keys(Keys.ENTER)  # the text is what runs
        wait(driver, lambda d: "q=school+bus+in+top+row" in d.current_url, "searched")
        assert driver.find_element(By.CSS_SELECTOR, ".summary .count").text == "1 match"

        driver.find_element(By.CSS_SELECTOR, "#grid .card .thumb").send_keys(Keys.SPACE)  # the card's one tab stop
        assert driver.find_element(By.CSS_SELECTOR, "#grid .card .pick input").is_selected()

        driver.get(base + "?q=school+bus+in+top-left+AND+tabby")  # nothing: the looser queries come in place
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#relaxed ul.looser li"), "looser queries")
        assert driver.find_element(By.CSS_SELECTOR, "#relaxed ul.looser li").text == (
            "school bus AND tabby 'school bus' anywhere: 2 matches")
