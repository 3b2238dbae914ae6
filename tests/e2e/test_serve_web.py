"""The clinicians' web page in a real headless Chromium (Debian `chromium` + `chromedriver`, driven by selenium)
against a real `medai serve` process on 127.0.0.1: sign in with a token, predict from JSON records and from an
uploaded image (heatmap shown), see the operating point and model card. Screenshots go to test-output/screenshots/
(or $MEDAI_SCREENSHOTS)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import make_binary_table, make_lesion_images
from tests.orthanc import orthanc  # noqa: F401  (module-scoped real Orthanc; skips when absent)
from tests.serve_server import running_server

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(os.environ.get("MEDAI_SCREENSHOTS", Path(__file__).resolve().parents[2] / "test-output" /
                                  "screenshots"))


@pytest.fixture(scope="module")
def server(served_runs, tmp_path_factory):
    with running_server(served_runs, tmp_path_factory.mktemp("web-state")) as (url, tokens):
        yield url, tokens["clinician"]


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not an empty canvas
    return path


def wait_for(driver, condition, timeout=60):
    """Wait for ``condition``; on timeout save a screenshot (``failed-*.png``) and the page's text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"failed-{int(time.time())}.png"))
        shown = {name: driver.execute_script(f"var e = document.getElementById('{name}'); return e && e.innerText;")
                 for name in ("error", "results", "facts", "pacs-error")}
        raise AssertionError(f"the page did not reach the expected state; it shows: {shown}") from None


def choose_model(driver, kind: str, modality: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    select = Select(driver.find_element(By.ID, "model"))
    label = next(o.text for o in select.options if f"{kind}, {modality}" in o.text)
    select.select_by_visible_text(label)


def upload_and_wait_for_the_picture(driver, path: Path) -> None:
    """Upload one file, predict, and wait until the explanation picture of the result has loaded."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "run").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#results img.explain"))
    image = driver.find_element(By.CSS_SELECTOR, "#results img.explain")
    wait_for(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 50)


def test_sign_in_is_required_and_a_wrong_token_is_refused(server, browser):
    from selenium.webdriver.common.by import By

    url, _ = server
    browser.delete_all_cookies()
    browser.get(url + "/")
    assert browser.current_url.endswith("/login")
    browser.find_element(By.ID, "token").send_keys("medai_wrong-token-0000000000000000")
    browser.find_element(By.ID, "signin").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "failed").is_displayed())
    shot(browser, "login-refused")


def test_predict_from_records_shows_decision_refer_and_explanation(server, browser):
    from selenium.webdriver.common.by import By

    url, token = server
    browser.get(url + "/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "signin").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 5)
    choose_model(browser, "binary", "tabular")
    wait_for(browser, lambda d: "threshold" in d.find_element(By.ID, "facts").text)
    wait_for(browser, lambda d: "Model card" in d.find_element(By.ID, "card").text
             or "## " in d.find_element(By.ID, "card").text)
    records = json.loads(make_binary_table(n=3, seed=8).drop(columns=["outcome"]).to_json(orient="records"))
    box = browser.find_element(By.ID, "json")
    box.clear()
    box.send_keys(json.dumps({"records": records}))
    browser.find_element(By.ID, "run").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results > table > tr")) == 4)
    text = browser.find_element(By.ID, "results").text
    assert "%" in text and ("decided" in text or "refer to clinician" in text)
    assert "integrated gradients" in text
    facts = browser.find_element(By.ID, "facts").text
    assert "Calibration" in facts and "Uncertainty" in facts
    shot(browser, "tabular-prediction")


def test_upload_an_image_and_see_its_heatmap(server, browser, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    url, _ = server
    browser.get(url + "/")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 5)
    choose_model(browser, "binary", "image")
    images, _ = make_lesion_images(n=2, seed=12)
    path = tmp_path / "upload.png"
    Image.fromarray(images[1]).save(path)
    upload_and_wait_for_the_picture(browser, path)
    assert "upload" in browser.find_element(By.ID, "results").text
    shot(browser, "image-heatmap")


def test_upload_an_image_to_a_segmentation_model_and_see_its_mask(server, browser, tmp_path):
    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By

    from medai.data.phantoms import make_lesion_phantoms

    url, _ = server
    browser.get(url + "/")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 5)
    choose_model(browser, "segmentation", "segmentation")
    wait_for(browser, lambda d: "conformal mask" in d.find_element(By.ID, "facts").text)
    phantoms = make_lesion_phantoms(1, seed=31)
    path = tmp_path / "scan.png"
    Image.fromarray((np.clip(phantoms.images[0, 0], 0, 1) * 255).astype(np.uint8)).save(path)
    upload_and_wait_for_the_picture(browser, path)
    text = browser.find_element(By.ID, "results").text
    assert "scan" in text and "area" in text and "mm²" in text and "no pixel spacing" in text
    shot(browser, "segmentation-mask")


@pytest.fixture(scope="module")
def pacs_server(served_runs, tmp_path_factory, orthanc):  # noqa: F811
    """`medai serve --pacs-url` against a real Orthanc holding a lesion study and a normal one."""
    from medai.serve.pacs import Pacs, PacsConfig
    from tests.unit.serve.test_pacs import _study

    pacs = Pacs(PacsConfig(orthanc.dicomweb_url, orthanc.user, orthanc.password, timeout_s=20))
    root = tmp_path_factory.mktemp("web-pacs")
    studies = {"lesion": _study(root / "lesion", [1, 1], seed=21), "normal": _study(root / "normal", [0, 0], seed=22)}
    for datasets in studies.values():
        pacs.store(datasets)
    env = {"MEDAI_PACS_USER": orthanc.user, "MEDAI_PACS_PASSWORD": orthanc.password}
    with running_server(served_runs, root / "state", "--pacs-url", orthanc.dicomweb_url, env=env) as (url, tokens):
        yield url, tokens["clinician"], pacs, {k: str(v[0].StudyInstanceUID) for k, v in studies.items()}


def test_pacs_worklist_ranks_by_risk_and_stores_an_sr(pacs_server, browser):
    from selenium.webdriver.common.by import By

    url, token, pacs, uids = pacs_server
    browser.delete_all_cookies()
    browser.get(url + "/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "signin").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 5)
    choose_model(browser, "binary", "image")
    browser.find_element(By.ID, "worklist").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#studies > table > tr")) == 3)
    rows = browser.find_elements(By.CSS_SELECTOR, "#studies > table > tr")
    assert uids["lesion"][-12:] in rows[1].text and uids["normal"][-12:] in rows[2].text  # highest risk first
    rows[1].find_element(By.CSS_SELECTOR, "button.analyse").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#studies .stored"))
    assert "SR stored (2 image(s)" in browser.find_element(By.ID, "studies").text
    shot(browser, "pacs-worklist")
    from medai.io.dicom_sr import read_classification_sr

    instances = pacs.retrieve_study_instances(uids["lesion"])
    srs = [ds for ds in instances if ds.Modality == "SR"]
    assert len(srs) == 1 and len(read_classification_sr(srs[0])) == 2  # one finding per image


def test_pacs_study_segmented_and_stored_as_seg_and_sr(pacs_server, browser):
    from selenium.webdriver.common.by import By

    from medai.io.dicom_sr import read_segmentation_sr

    url, token, pacs, uids = pacs_server
    browser.get(url + "/")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 5)
    choose_model(browser, "segmentation", "segmentation")
    browser.find_element(By.ID, "worklist").click()
    wait_for(browser, lambda d: any(uids["normal"][-12:] in row.text
                                    for row in d.find_elements(By.CSS_SELECTOR, "#studies > table > tr")))
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#studies > table > tr") if uids["normal"][-12:] in r.text)
    row.find_element(By.CSS_SELECTOR, "button.analyse").click()
    wait_for(browser, lambda d: "SEG + SR stored" in d.find_element(By.ID, "studies").text)
    assert "total area" in browser.find_element(By.ID, "studies").text
    shot(browser, "pacs-segmentation")
    instances = pacs.retrieve_study_instances(uids["normal"])
    assert sorted(ds.Modality for ds in instances if ds.Modality in ("SEG", "SR")) == ["SEG", "SR"]
    sr = next(ds for ds in instances if ds.Modality == "SR")
    assert len(read_segmentation_sr(sr)) == 2  # one area per image
