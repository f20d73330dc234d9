"""The HTML report in a real headless Chromium: it renders, shows the store's numbers, sorts, logs
no console error and requests nothing from the network."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from browser import chromium
from conftest import run_cli_in_process
from PIL import Image
from report_store import build_store, resolve, table_json

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    db = build_store(folder)
    out = folder / "report.html"
    result = run_cli_in_process("report", "--db", str(db), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return db, out


def _requests(driver, page: str) -> list[str]:
    """URLs of every request ``page`` made (the performance log's Network events; the browser's own
    start page is not the report's)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent" and message["params"].get("documentURL") == page:
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_report_renders_with_the_store_numbers_and_no_console_error(report):
    from selenium.webdriver.common.by import By

    db, out = report
    data = table_json(db)
    with chromium() as driver:
        driver.get(out.as_uri())
        assert driver.title.startswith("gcp-robust report")
        cells = driver.find_elements(By.CSS_SELECTOR, "td[data-src]")
        assert len(cells) > 100
        for cell in cells:
            value = resolve(data, json.loads(cell.get_attribute("data-src")))
            assert repr(value) == cell.get_attribute("data-value")
            text = cell.get_attribute("textContent")
            scale = 100 if "flip_probability" in cell.get_attribute("data-src") else 1
            assert text.split(" [")[0] == (str(value) if isinstance(value, int) else f"{value * scale:.2f}")
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert headings == ["Common corruptions", "Adversarial attacks", "Perturbation stability", "GAP vs GCP",
                            "Provenance"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "figure svg")) == 2
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        requests = _requests(driver, out.as_uri())
        assert requests and all(url.startswith(("file:", "data:")) for url in requests), requests
        shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L"), dtype=float)
        assert shot.shape[1] >= 1200 and shot.std() > 20  # not blank: text, tables and shading
        assert (shot < 128).mean() > 0.01


def test_clicking_a_header_sorts_its_table(report):
    from selenium.webdriver.common.by import By

    _, out = report
    with chromium() as driver:
        driver.get(out.as_uri())
        table = driver.find_element(By.ID, "attack-summary")
        headers = table.find_elements(By.CSS_SELECTOR, "thead th")
        column = next(i for i, h in enumerate(headers) if h.text == "ε 1/255")

        def column_values() -> list[float]:
            rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
            return [float(row.find_elements(By.CSS_SELECTOR, "th, td")[column].get_attribute("data-value"))
                    for row in rows]

        before = column_values()
        headers[column].click()
        assert column_values() == sorted(before) and headers[column].get_attribute("aria-sort") == "ascending"
        headers[column].click()
        assert column_values() == sorted(before, reverse=True)
        label = table.find_elements(By.CSS_SELECTOR, "thead th")[0]
        label.click()
        names = [row.find_element(By.TAG_NAME, "th").get_attribute("data-value").lower()
                 for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert names == sorted(names)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_report_renders_with_the_network_off(report):
    from selenium.webdriver.common.by import By

    _, out = report
    with chromium() as driver:
        driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
        driver.get(out.as_uri())
        assert len(driver.find_elements(By.CSS_SELECTOR, "td[data-src]")) > 100
        assert len(driver.find_elements(By.CSS_SELECTOR, "figure svg")) == 2
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_report_reads_at_phone_width(report):
    _, out = report
    with chromium() as driver:
        driver.set_window_size(390, 844)
        driver.get(out.as_uri())
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400  # wide tables scroll inside their own box, the page does not
