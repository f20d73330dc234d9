"""A real headless Chromium for the report's tests (Debian's chromium and chromedriver, installed
by tools/chromium), driven by Selenium: started with a fresh profile in a temporary folder and
no background network, and quit after the test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1600")


def _missing(reason: str) -> None:
    """Skip where the browser cannot run, except under CI=true, where a missing browser fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser tests: tools/chromium install)")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator:
    """A Selenium driver of a headless Chromium that logs the console and the network."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[test]')")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        _missing("no chromium or chromedriver on PATH (tools/chromium install)")
    with tempfile.TemporaryDirectory(prefix="report-browser-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()
