"""`imgidx serve` in a process of its own and headless Chromium, for the browser tests of the web app."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
#: Seconds the server gets to stop after Ctrl-C.
STOP_S = 60


@contextmanager
def serving(db: str | Path, cache: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`imgidx serve --quiet` over ``db`` on a free port: its URL and process; stopped with Ctrl-C after."""
    env = {**os.environ, "IMGIDX_CACHE_DIR": str(cache)}
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer", "serve", "--db", str(db), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    line = process.stderr.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)", line)
    assert found, line + process.stderr.read()
    yield found.group(1), process
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=STOP_S) == 0
    finally:
        if process.poll() is None:
            process.kill()


@contextmanager
def chromium(*arguments: str):
    """A headless Chromium driven by selenium, with ``arguments`` added (a window size)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *arguments):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
