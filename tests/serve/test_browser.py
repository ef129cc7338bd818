"""The search page in a real headless browser (Debian's chromium driven by selenium through
/usr/bin/chromedriver; no browser is downloaded). The server runs with uvicorn on 127.0.0.1.

Skips when chromium, chromedriver or selenium is missing. Screenshots go to the test's temp
folder, and also to ``$POLYMODAL_SCREENSHOTS`` (e.g. ``docs/screenshots``) when that is set.
``$POLYMODAL_BROWSER_RUN`` serves another retrieval run folder instead of the small test run,
``$POLYMODAL_BROWSER_CLASSIFY_RUN`` another classification run and
``$POLYMODAL_BROWSER_CAPTION_RUN`` another caption run (used to take the documentation
screenshots on real runs).
"""
from __future__ import annotations

import base64
import contextlib
import importlib.util
import csv
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and Path(p).is_file()), None)
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver")
                     if p and Path(p).is_file()), None)
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000", "--hide-scrollbars"]
TIMEOUT = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run_dir(request) -> Path:
    override = os.environ.get("POLYMODAL_BROWSER_RUN")
    return Path(override) if override else request.getfixturevalue("small_run")


@contextlib.contextmanager
def _serving(run_dir: Path):
    """uvicorn on a free loopback port in a background thread; yields the base URL."""
    import uvicorn

    from polymodal.serve.app import create_app

    app = create_app(run_dir, max_upload_mb=2, preload=True)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t0 = time.time()
    while not srv.started:
        if time.time() - t0 > 30 or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(run_dir):
    with _serving(run_dir) as url:
        yield url


@pytest.fixture(scope="module")
def classify_run(request) -> Path:
    override = os.environ.get("POLYMODAL_BROWSER_CLASSIFY_RUN")
    return Path(override) if override else request.getfixturevalue("small_classify_run")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed "
                    "(apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in BROWSER_ARGS:
        opts.add_argument(a)
    try:
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    except Exception as e:  # a broken install: say so instead of a long driver traceback
        pytest.skip(f"cannot start headless chromium: {type(e).__name__}: {str(e)[:200]}")
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()


def _screenshot(driver, name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    driver.save_screenshot(str(out))
    assert out.stat().st_size > 10_000  # a real rendered page, not an empty image
    target = os.environ.get("POLYMODAL_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, Path(target) / name)
    return out


def _cards(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid .hit')].map(d => ({rank: +d.dataset.rank,"
        " score: +d.dataset.score, id: d.dataset.rowId, img: d.querySelector('img') ? "
        "d.querySelector('img').naturalWidth : -1}))")


def _wait(driver, cond, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, TIMEOUT, poll_frequency=0.1).until(lambda d: cond(d))
    except Exception:
        status = driver.find_element("id", "status").text
        pytest.fail(f"timed out waiting for {what}; status line: {status!r}")


def _assert_ranked(cards: list[dict], k: int) -> None:
    assert len(cards) == k
    assert [c["rank"] for c in cards] == list(range(1, k + 1))
    scores = [c["score"] for c in cards]
    assert scores == sorted(scores, reverse=True)


def test_search_page_text_upload_and_errors(server, browser, run_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from polymodal.tasks.retrieval.predict import load_run

    d = browser
    d.get(server + "/")
    _wait(d, lambda d: "items" in d.find_element(By.ID, "info").text, "the /health line")
    assert d.find_element(By.ID, "bar").is_displayed()
    assert not d.find_element(By.ID, "filepanel").is_displayed()

    # empty query: a visible error, no request
    d.find_element(By.ID, "go").click()
    status = d.find_element(By.ID, "status")
    assert "error" in status.get_attribute("class") and "query" in status.text.lower()

    # text query -> k ranked cards whose thumbnails loaded
    Select(d.find_element(By.ID, "k")).select_by_visible_text("10")
    box = d.find_element(By.ID, "q")
    box.send_keys("a red apple")
    d.find_element(By.ID, "go").click()
    _wait(d, lambda d: "results for" in d.find_element(By.ID, "status").text, "text results")
    _wait(d, lambda d: all(c["img"] > 0 for c in _cards(d)), "thumbnails to load")
    _assert_ranked(_cards(d), 10)
    assert "ms server" in d.find_element(By.ID, "status").text  # the latency is shown
    assert "error" not in d.find_element(By.ID, "status").get_attribute("class")
    _screenshot(d, "search_page.png", tmp_path)

    # switch to file mode and upload the text query's top hit: it comes back in the top 3
    top_id = _cards(d)[0]["id"]
    d.find_element(By.ID, "mode-file-label").click()
    assert d.find_element(By.ID, "filepanel").is_displayed()
    assert not d.find_element(By.ID, "bar").is_displayed()
    rec = next(r for r in load_run(run_dir).manifest.records if r.id == top_id)
    Select(d.find_element(By.ID, "k")).select_by_visible_text("5")
    d.find_element(By.ID, "file").send_keys(str(Path(rec.image).resolve()))
    name = Path(rec.image).name
    _wait(d, lambda d: f"results for {name}" in d.find_element(By.ID, "status").text,
          "upload results")
    cards = _cards(d)
    _assert_ranked(cards, 5)
    assert rec.id in [c["id"] for c in cards[:3]]
    _wait(d, lambda d: d.execute_script("return document.getElementById('preview')"
                                        ".naturalWidth") > 0, "the query preview")
    _screenshot(d, "search_page_upload.png", tmp_path)

    # an undecodable "image": the server's message is shown as an error, the grid cleared
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"definitely not a png")
    d.find_element(By.ID, "file").send_keys(str(bad))
    _wait(d, lambda d: "422" in d.find_element(By.ID, "status").text, "the 422 error")
    status = d.find_element(By.ID, "status")
    assert "error" in status.get_attribute("class") and "broken.png" in status.text
    assert _cards(d) == []
    assert not d.find_element(By.ID, "preview").is_displayed()  # no broken-image icon
    _screenshot(d, "search_page_error.png", tmp_path)


DROP_JS = """
const [zoneId, b64, name, type] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const dt = new DataTransfer();
dt.items.add(new File([bytes], name, {type}));
const zone = document.getElementById(zoneId);
for (const ev of ["dragover", "drop"])
  zone.dispatchEvent(new DragEvent(ev, {dataTransfer: dt, bubbles: true, cancelable: true}));
"""


def _drop(driver, zone: str, path: Path, mime: str) -> None:
    """Drop a file on a drop zone the way a browser does (a DragEvent carrying the File)."""
    driver.execute_script(DROP_JS, zone, base64.b64encode(path.read_bytes()).decode(),
                          path.name, mime)


def test_drag_and_drop_searches_with_the_dropped_image(server, browser, run_dir):
    from selenium.webdriver.common.by import By

    from polymodal.tasks.retrieval.predict import load_run

    d = browser
    d.get(server + "/")
    _wait(d, lambda d: "items" in d.find_element(By.ID, "info").text, "the /health line")
    rec = load_run(run_dir).manifest.records[-1]
    _drop(d, "drop", Path(rec.image), "image/png")
    name = Path(rec.image).name
    _wait(d, lambda d: f"results for {name}" in d.find_element(By.ID, "status").text,
          "results for the dropped file")
    assert d.find_element(By.ID, "filepanel").is_displayed()  # dropping switched the mode
    assert rec.id in [c["id"] for c in _cards(d)[:3]]


def test_classify_page(classify_run, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from polymodal.core.runfolder import RunFolder
    doc = RunFolder.open(classify_run).config  # paths resolved
    rows = {json.loads(line)["id"]: json.loads(line)
            for line in Path(doc["manifest"]).read_text().splitlines()}
    with open(classify_run / "predictions.csv") as fh:
        pred = next(p for p in csv.DictReader(fh) if p["modalities"] == "audio+image")
    row = rows[pred["id"]]
    base = Path(doc["manifest"]).parent
    files = {m: (Path(row[m]) if Path(row[m]).is_absolute() else base / row[m]).resolve()
             for m in ("image", "audio")}
    d = browser
    with _serving(classify_run) as url:
        d.get(url + "/")
        _wait(d, lambda d: "fusion over" in d.find_element(By.ID, "info").text, "/health")
        assert d.find_element(By.ID, "classify-ui").is_displayed()
        assert not d.find_element(By.ID, "search-ui").is_displayed()
        d.find_element(By.ID, "cgo").click()  # nothing given: an error, no request
        assert "error" in d.find_element(By.ID, "status").get_attribute("class")
        d.find_element(By.ID, "c-image").send_keys(str(files["image"]))
        d.find_element(By.ID, "c-audio").send_keys(str(files["audio"]))
        d.find_element(By.ID, "cgo").click()
        _wait(d, lambda d: d.find_elements(By.ID, "prediction"), "the prediction")
        assert d.find_element(By.ID, "prediction").text == f"prediction: {pred['prediction']}"
        bars = d.execute_script("return [...document.querySelectorAll('#probs .bar')]"
                                ".map(b => [b.dataset.label, +b.dataset.p])")
        assert bars[0][0] == pred["prediction"]
        assert bars[0][1] == pytest.approx(float(pred["confidence"]), abs=0.02)
        assert [p for _, p in bars] == sorted((p for _, p in bars), reverse=True)
        facts = d.find_element(By.ID, "facts").text
        assert "given: audio, image" in facts and "missing: none" in facts
        assert "ms server" in d.find_element(By.ID, "status").text
        _screenshot(d, "classify_page.png", tmp_path)
        # clear, then drop only the image: audio is reported missing
        d.find_element(By.ID, "cclear").click()
        assert d.find_element(By.ID, "result").text == ""
        _drop(d, "cdrop-image", files["image"], "image/png")
        d.find_element(By.ID, "cgo").click()
        _wait(d, lambda d: d.find_elements(By.ID, "facts"), "the second prediction")
        assert "given: image" in d.find_element(By.ID, "facts").text
        assert "missing: audio" in d.find_element(By.ID, "facts").text
        if importlib.util.find_spec("fastapi_offline"):  # /docs renders offline
            d.get(url + "/docs")
            _wait(d, lambda d: "/classify" in d.find_element(By.TAG_NAME, "body").text,
                  "Swagger UI to list /classify")


def test_caption_page(request, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from polymodal.data.datasets import sample_path

    override = os.environ.get("POLYMODAL_BROWSER_CAPTION_RUN")
    run = Path(override) if override else request.getfixturevalue("small_caption_run")
    caption = pytest.importorskip("polymodal.tasks.caption")
    src = sample_path("openclipart")
    image = (src.parent / json.loads(src.read_text().splitlines()[0])["image"]).resolve()
    expected = caption.caption_images(caption.load_captioner(run), [image])[0]
    d = browser
    with _serving(run) as url:
        d.get(url + "/")
        _wait(d, lambda d: "describe an image" in d.find_element(By.ID, "info").text, "/health")
        assert d.find_element(By.ID, "caption-ui").is_displayed()
        assert not d.find_element(By.ID, "search-ui").is_displayed()
        _drop(d, "capdrop", image, "image/png")
        _wait(d, lambda d: d.find_elements(By.ID, "caption-text"), "the caption")
        assert d.find_element(By.ID, "caption-text").text == f"“{expected}”"
        assert "ms server" in d.find_element(By.ID, "status").text
        _wait(d, lambda d: d.execute_script("return document.getElementById('cappreview')"
                                            ".naturalWidth") > 0, "the image preview")
        _screenshot(d, "caption_page.png", tmp_path)
