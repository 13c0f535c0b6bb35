"""A real headless Chromium for the HTML report tests: Debian's chromium and chromium-driver
(./nsslab.sh test installs both). The driver's path is given, so Selenium Manager never runs
and nothing is downloaded. Missing, the tests fail and say which package to install: a
skipped browser test would pass a report nobody opened."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def chromium() -> Iterator:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            pytest.fail(
                f"{path} is missing: install the Debian package {package} (apt-get install {package})"
            )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]' (./nsslab.sh test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromedriver and every chromium process it started


def artifacts() -> Path:
    """Where screenshots are kept after the run: $NSSLAB_ARTIFACTS, else reports/ (gitignored)."""
    where = Path(os.environ.get("NSSLAB_ARTIFACTS") or ROOT / "reports")
    where.mkdir(parents=True, exist_ok=True)
    return where


def screenshot(driver, name: str, record_property) -> Path:
    """A full-page picture of the report as a user sees it, recorded in the test's properties
    (JUnit XML shows it beside the result)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(height + 200, 600), 16000))  # + the window's own frame
    driver.execute_script("window.scrollTo(0, 0)")  # a click scrolled: the picture starts at the top
    path = artifacts() / name
    try:
        assert driver.save_screenshot(str(path)), path
    finally:
        driver.set_window_size(1400, 1000)  # the next test sees the usual window
    record_property("screenshot", str(path))
    return path
