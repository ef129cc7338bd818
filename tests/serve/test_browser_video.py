"""The search page plays a video hit from its moment (``start_s``), in headless chromium, on a
tiny real text -> video run (av-digits-video built in tmp_path)."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("av")
pytestmark = pytest.mark.timeout(240)

from test_browser import _serving, _wait, browser  # noqa: E402,F401  (the browser fixture)

DATA = Path("/work/shared/data")


@pytest.fixture(scope="module")
def video_run(tmp_path_factory) -> Path:
    if not (DATA / "mnist").is_dir() or not (DATA / "fsdd").is_dir():
        pytest.skip("real MNIST / FSDD data not found")
    from polymodal.data.datasets import build_dataset
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.train.config import TrainConfig

    d = tmp_path_factory.mktemp("bvideo")
    m = build_dataset("av-digits-video", DATA, d / "set", seed=2, progress=False, limit=30,
                      size=32, fps=5, min_digits=3, max_digits=4)
    cfg = RetrievalConfig(manifest=str(m), cache_dir=str(d / "cache"), query="text",
                          target="video", loss="infonce", frame_pairs="timing", dim=64,
                          hidden=128, batch_size=32,
                          train=TrainConfig(epochs=30, patience=30, keep="last", lr=3e-3,
                                            progress=False))
    fit_retrieval(cfg, d / "run", with_baselines=False, progress=False)
    return d / "run"


PLAY = """
const done = arguments[arguments.length - 1];
const vs = [...document.querySelectorAll('#grid .hit video')];
const v = vs.reduce((a, b) => (+b.dataset.start > +a.dataset.start ? b : a));
const start = +v.dataset.start;
v.muted = true;
const report = () => done({start: start, t: v.currentTime, paused: v.paused,
                           n: vs.length, err: v.error && v.error.code});
v.addEventListener('timeupdate', () => { if (!v.paused) report(); });
v.play().catch((e) => done({start: start, t: -1, err: String(e), n: vs.length}));
setTimeout(report, 20000);
"""


def test_page_plays_a_video_hit_from_its_start(video_run, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    with _serving(video_run) as url:
        d.get(url + "/")
        _wait(d, lambda d: "items" in d.find_element(By.ID, "info").text, "the /health line")
        Select(d.find_element(By.ID, "k")).select_by_visible_text("10")
        box = d.find_element(By.ID, "q")
        for word in ("seven", "four", "two", "nine"):  # one whose best hit starts after 0 s
            box.clear()
            box.send_keys(word)
            d.find_element(By.ID, "go").click()
            _wait(d, lambda d: "results for" in d.find_element(By.ID, "status").text
                  and d.find_elements(By.CSS_SELECTOR, "#grid .hit video"), "video hits")
            starts = [float(v.get_attribute("data-start"))
                      for v in d.find_elements(By.CSS_SELECTOR, "#grid .hit video")]
            if max(starts) >= 1.0:
                break
        assert max(starts) >= 1.0, starts
        d.set_script_timeout(30)
        res = d.execute_async_script(PLAY)
    assert res["n"] == 10 and not res.get("err"), res
    assert res["t"] >= res["start"] - 0.5, res  # it played from the moment, not from 0
