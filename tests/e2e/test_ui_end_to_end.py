"""End to end: ``deep-events ui`` (webserver + daemon) watching a folder a microscope writes to,
and a real browser on the UI.

Both tests share one running UI (module-scoped fixture) and are marked as one xdist group.
(pytest-xdist 3.8 under pytest 9 ignores groups; the tests then land on both workers, each
worker starts its own UI and the browser test ingests an acquisition of its own.)
Logs, screenshots and the measured latency go to ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui"), pytest.mark.timeout(420)]

KIND = "points"

CATALOG_DEADLINE_S = 90.0
INGESTION_ASSETS = {
    # asset key path → name shown in the graph
    ("raw_movie",): "raw_movie",
    ("acquisition_metadata",): "acquisition_metadata",
    (KIND, "ground_truth"): "ground_truth",
    (KIND, "event_crops"): "event_crops",
    (KIND, "event_catalog"): "event_catalog",
}


@pytest.fixture(scope="module")
def artifacts(e2e_artifacts: Path) -> Path:
    return e2e_artifacts


@pytest.fixture(scope="module")
def ui(tmp_path_factory, artifacts: Path, harness):
    """One ``deep-events ui`` on a temporary home watching a temporary root."""
    base = tmp_path_factory.mktemp("ui")
    root = base / "root"
    root.mkdir()
    # one log per xdist worker: should the two tests land on different workers, each has a UI
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    handle = harness.DeepEventsUI(
        base / "home",
        root,
        log_dir=artifacts,
        quiet_seconds=harness.QUIET_SECONDS,
        name=f"ui-{worker}",
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


# ------------------------------------------------------------------------------ test 1


def test_acquisition_written_like_a_microscope_is_ingested_once(ui, artifacts, harness):
    staged = harness.stage_acquisition(ui.home.parent / "staging", seed=71)
    acquisition = staged.acquisition
    key = staged.destination(ui.root).as_posix()
    assert staged.n_events >= 2

    # --- the movie grows in 9 chunks over >= 8 s, and the last chunk only lands once a
    # sensor tick has seen the incomplete movie (ticks come every 5-10 s): nothing of it may
    # be registered, run or catalogued meanwhile
    chunks = 9

    def seen_growing() -> bool:
        ticks = re.findall(r"(\d+) acquisitions scanned.*?(\d+) waiting for quiet", ui.log_text())
        return any(int(scanned) >= 1 and int(waiting) >= 1 for scanned, waiting in ticks)

    def nothing_ingested_yet(chunk: int) -> None:
        assert key not in ui.partitions(), f"registered after chunk {chunk} of a growing movie"
        assert ui.runs(key) == [], f"run requested after chunk {chunk} of a growing movie"
        assert ui.catalog_documents(key) == [], f"catalogued after chunk {chunk}"
        if chunk == chunks - 2:
            harness.wait_until(
                seen_growing, timeout=6 * harness.SENSOR_INTERVAL_S, what="a tick while growing"
            )

    complete = harness.write_like_microscope(
        staged, ui.root, chunks=chunks, seconds=8.0, on_chunk=nothing_ingested_yet
    )
    assert seen_growing()

    # --- complete: its events are in the catalog within 90 s
    seen = ui.wait_positive_events(key, staged.n_events, timeout=CATALOG_DEADLINE_S)
    latency = seen - complete
    runs = ui.wait_runs_finished()
    assert all(r.is_success for r in runs), [(r.run_id, r.status) for r in runs]
    assert ui.partitions() == [key]
    run_keys = {r.tags.get("dagster/run_key", "") for r in ui.runs(key)}
    assert all(k.startswith(f"{key}@") for k in run_keys), run_keys

    # --- one more napari point far from every event: the catalog follows
    csv_path = staged.destination(ui.root) / acquisition.csv_files[KIND][0].name
    y, x, distance = harness.far_away_point(acquisition)
    assert distance >= 100, f"no room for a new event ({distance:.0f} px)"
    frame = acquisition.shape[0] // 2
    runs_before = len(ui.runs(key))
    harness.append_napari_row(csv_path, acquisition, frame, y, x)
    annotated = time.time()
    seen_new = ui.wait_positive_events(key, staged.n_events + 1, timeout=CATALOG_DEADLINE_S)
    runs = ui.wait_runs_finished()
    assert all(r.is_success for r in runs)
    assert len(ui.runs(key)) == runs_before + 1
    new = [
        d
        for d in ui.catalog_documents(key)
        if d.get("label") == KIND
        and d["frames"][0] <= frame < d["frames"][1]
        and d["crop_box"][0] <= x < d["crop_box"][2]
        and d["crop_box"][1] <= y < d["crop_box"][3]
    ]
    assert new, "no catalog event covers the added point"

    # --- restart the daemon (the whole UI): nothing is re-run
    n_runs = len(ui.runs())
    ui.restart()
    harness.wait_until(
        lambda: ui.sensor_ticks() >= 3,
        timeout=12 * harness.SENSOR_INTERVAL_S,
        what="3 sensor ticks after the restart",
    )
    time.sleep(2)  # a run requested by the last tick would be queued by now
    assert len(ui.runs()) == n_runs, "a restart re-ran acquisitions"
    assert ui.positive_events(key) == staged.n_events + 1

    record = {
        "latency_s": round(latency, 2),
        "annotation_latency_s": round(seen_new - annotated, 2),
        "quiet_seconds": harness.QUIET_SECONDS,
        "goal_s": harness.QUIET_SECONDS + 30.0,
        "events": staged.n_events,
        "runs": n_runs,
    }
    (artifacts / "latency.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"completion → catalog: {record}")


# ------------------------------------------------------------------------------ test 2


@pytest.fixture(scope="module")
def materialised_key(ui, harness) -> str:
    """An acquisition partition with a successful run (the first test's, else a new one)."""
    done = [r for r in ui.runs() if r.is_success and "dagster/partition" in r.tags]
    if done:
        return done[0].tags["dagster/partition"]
    staged = harness.stage_acquisition(ui.home.parent / "staging-browser", seed=72)
    key = staged.destination(ui.root).as_posix()
    harness.write_like_microscope(staged, ui.root, chunks=1, seconds=0.0)
    ui.wait_positive_events(key, staged.n_events, timeout=CATALOG_DEADLINE_S)
    ui.wait_runs_finished()
    return key


@pytest.fixture(scope="module")
def browser(harness):
    chromium_path = harness.CHROMIUM
    if not chromium_path.exists() or not _playwright_available():
        message = f"the browser test needs Debian's chromium ({chromium_path}) and playwright"
        if os.environ.get("CI"):
            pytest.fail(message + " (make test installs both)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(chromium_path), args=harness.CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def _graphql(ui, query: str) -> dict:
    request = urllib.request.Request(
        f"{ui.url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _code_location(ui) -> str:
    answer = _graphql(ui, "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
    (entry,) = answer["data"]["workspaceOrError"]["locationEntries"]
    return entry["name"]


def test_browser_shows_assets_partitions_and_thumbnail(
    ui, materialised_key: str, browser, artifacts: Path
):
    from playwright.sync_api import expect

    # the first-visit "join the community" dialog would cover the pages
    assert _graphql(ui, "mutation { setNuxSeen }")["data"]["setNuxSeen"] is True
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(30_000)
    shots = []

    def shoot(name: str) -> None:
        path = artifacts / f"ui-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    try:
        # --- the ingestion group's asset graph shows every ingestion asset
        location = _code_location(ui)
        page.goto(f"{ui.url}/locations/{location}/asset-groups/ingestion")
        page.wait_for_selector("foreignObject [data-tooltip='event_catalog']")
        page.wait_for_timeout(1000)  # layout animation
        shoot("asset-graph")
        names = page.eval_on_selector_all(
            "foreignObject [data-tooltip]", "els => els.map(e => e.getAttribute('data-tooltip'))"
        )
        missing = set(INGESTION_ASSETS.values()) - set(names)
        assert not missing, f"not in the asset graph: {missing} (graph shows {names})"

        # --- the catalog lists them with their key paths (points / ground_truth …)
        page.goto(f"{ui.url}/assets")
        expect(page.get_by_text("raw_movie", exact=True).first).to_be_visible()
        page.wait_for_timeout(500)
        shoot("asset-catalog")
        body = page.inner_text("body")
        for path in INGESTION_ASSETS:
            assert " / ".join(path) in body, f"{' / '.join(path)} not in the asset catalog"

        # --- the acquisition partitions are listed
        crops = f"{ui.url}/assets/{KIND}/event_crops"
        page.goto(f"{crops}?view=partitions")
        # the list shows a middle-truncated label; the full key is measured next to it
        expect(page.get_by_text(materialised_key, exact=True).first).to_be_attached()
        expect(page.get_by_text("Materialized (", exact=False).first).to_be_visible()
        page.wait_for_timeout(500)
        shoot("partitions")
        materialised = re.search(r"Materialized \((\d+)\)", page.inner_text("body"))
        assert materialised and int(materialised.group(1)) >= 1

        # --- the partition's latest materialisation shows its thumbnail (markdown image
        # with a data URI) next to its counts
        page.goto(f"{crops}?view=partitions&partition={quote(materialised_key, safe='')}")
        expect(page.get_by_text("Latest materialization").first).to_be_visible()
        row = page.locator("tr", has_text="thumbnail")
        expect(row.first).to_be_visible()
        shoot("materialization")
        row.first.get_by_text("Show Markdown").click()
        image = page.locator("img[src^='data:image/png;base64,']").first
        expect(image).to_be_visible()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        assert image.evaluate("img => img.naturalWidth") >= 64
        page.wait_for_timeout(1000)  # the dialog fades in
        shoot("thumbnail")
    except Exception:
        shoot("failure")
        raise
    finally:
        page.close()
    assert all(p.stat().st_size > 10_000 for p in shots)
