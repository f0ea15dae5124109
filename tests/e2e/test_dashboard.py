"""The dashboard in headless Chromium (Debian's package, driven by Playwright): it loads, its
charts draw real data from a simulation (a test that fails when a chart is empty), and the
rollback button pins an older model version. ``recloop report`` writes the same charts as
PNG files."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from recloop.simulators.synthetic import SyntheticPopulation
from tests.e2e.conftest import Server

CHROMIUM = "/usr/bin/chromium"
KEY = "dashboard-key"


def _simulate(http: httpx.Client, events: int) -> None:
    population = SyntheticPopulation(seed=2)
    spec = {"name": "always-politics", "kind": "fixed", "params": {"action_id": "politics"}}
    assert http.post("/v1/policies", json=spec).status_code in (200, 201)
    for _ in range(events):
        ctx = population.context()
        body = http.post("/v1/rank", json={"context": ctx, "actions": population.actions()}).json()
        value = population.reward(ctx, body["reward_action_id"])
        if value:
            http.post(f"/v1/events/{body['event_id']}/reward", json={"value": value})


def _wait_for(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.25)


@pytest.mark.slow
def test_the_dashboard_draws_real_data_and_rolls_back(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; `make slow` does)")
    from playwright.sync_api import sync_playwright

    settings = {"api_key": KEY, "exp_unit_seconds": 0.5, "checkpoint_every_examples": 100}
    with serve(**settings) as http:
        http.headers["X-API-Key"] = KEY
        _simulate(http, 800)

        def ready() -> bool:
            data = http.get("/v1/dashboard").json()
            return len(data["models"]["versions"]) >= 3 and data["join"]["joins"] >= 700

        _wait_for(ready)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
            page = browser.new_page(viewport={"width": 1100, "height": 1300})
            page.goto(str(http.base_url).rstrip("/") + "/dashboard")
            page.fill("#key", KEY)
            page.dispatch_event("#key", "change")
            page.wait_for_selector("body[data-loaded=true]", timeout=15_000)
            rewards = page.locator("#reward-chart")
            assert int(rewards.get_attribute("data-points") or 0) >= 5  # empty chart: fails
            assert page.locator("#reward-chart polyline.observed").count() == 1
            assert page.locator("#reward-chart .observed-point").count() >= 5
            estimates = page.locator("#estimates-chart")
            assert int(estimates.get_attribute("data-points") or 0) >= 2  # deployed + candidate
            assert page.locator("#estimates-chart circle.estimate").count() >= 2
            assert "always-politics" in (estimates.text_content() or "")
            cards = page.locator("#join .card").all_inner_texts()
            assert any(c.startswith("joined") and c.split()[-1].isdigit() for c in cards), cards
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            keep = os.environ.get("RECLOOP_ARTIFACTS")
            if keep:  # CI keeps the screenshot
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(keep) / "dashboard.png")

            # roll back: the button of an older version pins it, the page shows it
            button = page.locator("button.rollback").last
            version = button.get_attribute("data-version")
            button.click()
            page.wait_for_selector(f"text=pinned to {version}", timeout=10_000)
            assert http.get("/v1/models").json()["pinned"] == version
            browser.close()
        print(f"dashboard screenshot: {shot}")


def test_the_dashboard_page_and_its_data_over_http(serve: Callable[..., Server]) -> None:
    with serve(api_key=KEY, exp_unit_seconds=0.5, checkpoint_every_examples=50) as http:
        page = http.get("/dashboard")
        assert page.status_code == 200 and '<svg id="reward-chart"' in page.text
        assert http.get("/v1/dashboard").status_code == 401  # the data needs the key
        http.headers["X-API-Key"] = KEY
        empty = http.get("/v1/dashboard").json()
        assert empty["rewards"] == [] and empty["loops"] == ["default"]
        _simulate(http, 300)
        _wait_for(lambda: http.get("/v1/dashboard").json()["join"]["joins"] >= 250)
        data = http.get("/v1/dashboard").json()
        windows = data["rewards"]
        assert sum(w["n"] for w in windows) >= 250 and len(windows) >= 10
        assert all(0.0 <= w["observed"] <= 1.0 for w in windows)
        names = [c["name"] for c in data["evaluations"]["candidates"]]
        assert names == ["always-politics"]
        assert http.get("/v1/dashboard?loop=nope").status_code == 404
