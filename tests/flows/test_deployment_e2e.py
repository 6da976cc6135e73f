"""End to end as users run it: `prefect server start`, deployments/local-up.sh (work pool,
`gpu` limit, `prefect deploy --prefect-file deployments/prefect.yaml`, a process worker),
`prefect deployment run 'blend-pipeline/nightly'`, results in DuckDB, artifacts in the API and
in the UI (headless Chromium)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import Artifact
from prefect.settings import PREFECT_API_URL, temporary_settings

from blend.demo.dataset import DemoSize, write_demo_dataset
from blend.planners import PlannerName
from blend.store.database import Store, fetch_dicts
from tests.support.browser import chromium_page, needs_chromium
from tests.support.local_prefect import REPO, LocalPrefect, trigger, wait_final

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.prefect, pytest.mark.engine]

DEPLOYMENT = "blend-pipeline/nightly"


@dataclass(frozen=True, slots=True)
class NightlyRun:
    flow_run_id: str
    store: Path
    params_json: str
    seconds: float  # `prefect deployment run` to COMPLETED


@pytest.fixture(scope="module")
def nightly_run(
    local_prefect: LocalPrefect, tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> NightlyRun:
    """One deployment run on the small demo input, a tmp store and the tiny model."""
    root = tmp_path_factory.mktemp("nightly")
    input_path = write_demo_dataset(root / "nightly.jsonl", DemoSize.small(), seed=3)
    options = {
        "input_path": str(input_path),
        "store": str(root / "store"),
        "model": str(tiny_model),
    }
    params_json = json.dumps({"options": options})
    started = time.monotonic()
    flow_run_id = trigger(local_prefect, DEPLOYMENT, params_json)
    state = wait_final(local_prefect, flow_run_id)
    seconds = time.monotonic() - started
    assert state == "COMPLETED", local_prefect.logs()
    return NightlyRun(flow_run_id, root / "store", params_json, seconds)


def flow_run_artifacts(local: LocalPrefect, flow_run_id: str) -> list[Artifact]:
    """The artifacts of one flow run (its tasks' included), through the API."""
    only_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with (
        temporary_settings({PREFECT_API_URL: local.api_url}),
        get_client(sync_client=True) as client,
    ):
        return client.read_artifacts(artifact_filter=only_run)


def open_tab(page: Page, tab: str, shows: str, attempts: int = 4) -> None:
    """Click `tab` until `shows` (text only that tab renders) is visible."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    for _ in range(attempts - 1):
        page.get_by_text(tab, exact=True).first.click()
        try:
            page.get_by_text(shows).first.wait_for(timeout=15_000)
            return
        except PlaywrightTimeoutError:
            continue
    page.get_by_text(tab, exact=True).first.click()
    page.get_by_text(shows).first.wait_for()


def test_deployment_is_nightly_with_a_parameter_form(local_prefect: LocalPrefect) -> None:
    with (
        temporary_settings({PREFECT_API_URL: local_prefect.api_url}),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    [schedule] = deployment.schedules
    assert schedule.active
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    assert deployment.work_pool_name == "blend-process"
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
    ]
    definitions = deployment.parameter_openapi_schema["definitions"]
    form = definitions["PipelineOptions"]["properties"]
    assert {"input_path", "planning", "incremental", "engine", "gpu_limit"} <= set(form)
    planning = definitions["PlanningOptions"]["properties"]
    assert {"planner", "model_spec", "hardware", "search_settings"} <= set(planning)
    # the planner is one choice among the known names (a select box in the form)
    assert set(definitions["PlannerName"]["enum"]) == {p.value for p in PlannerName}


def test_deployment_run_writes_results_and_artifacts(
    local_prefect: LocalPrefect, nightly_run: NightlyRun
) -> None:
    print(f"\ndeployment run, trigger to COMPLETED: {nightly_run.seconds:.1f} s")
    with Store.open(nightly_run.store).connect() as con:
        per_request = fetch_dicts(
            con,
            "SELECT count(*) AS n, count(DISTINCT request_id) AS d, "
            "count(*) FILTER (WHERE error IS NOT NULL) AS errors FROM results",
        )[0]
        runs = fetch_dicts(con, "SELECT status, flow_run_id FROM runs")
    assert per_request == {"n": 34, "d": 34, "errors": 1}
    assert runs == [{"status": "completed", "flow_run_id": nightly_run.flow_run_id}]

    artifacts = flow_run_artifacts(local_prefect, nightly_run.flow_run_id)
    by_type = {a.type: a for a in artifacts}
    assert set(by_type) == {"progress", "table", "markdown"}
    assert by_type["progress"].data == 100.0
    assert by_type["table"].key == "blend-run-nightly"
    table = json.loads(str(by_type["table"].data))
    assert table[0]["status"] == "completed"
    assert table[0]["requests"] == 34 and table[0]["errors"] == 1
    assert table[0]["prefix_cache_hit_rate"] > 0
    assert by_type["markdown"].key == "blend-summary-nightly"
    summary = str(by_type["markdown"].data)
    for text in ("| planner | dfs |", "| requests | 34 |", "prefix sharing kept", "## Profile"):
        assert text in summary

    # The nightly again over the same input: nothing new, so nothing planned, no engine start.
    started = time.monotonic()
    again = trigger(local_prefect, DEPLOYMENT, nightly_run.params_json)
    assert wait_final(local_prefect, again) == "COMPLETED", local_prefect.logs()
    print(f"second deployment run (0 requests planned): {time.monotonic() - started:.1f} s")
    with Store.open(nightly_run.store).connect() as con:
        plans = fetch_dicts(con, "SELECT n_requests FROM plans ORDER BY created_at")
        n_runs = fetch_dicts(con, "SELECT count(*) AS n FROM runs")[0]["n"]
        n_results = fetch_dicts(con, "SELECT count(*) AS n FROM results")[0]["n"]
    assert [p["n_requests"] for p in plans] == [34, 0]
    assert (n_runs, n_results) == (1, 34)


@needs_chromium
def test_ui_shows_the_artifacts(
    local_prefect: LocalPrefect, nightly_run: NightlyRun, tmp_path: Path
) -> None:
    artifacts = flow_run_artifacts(local_prefect, nightly_run.flow_run_id)
    by_type = {a.type: a.id for a in artifacts}
    with chromium_page(tmp_path / "chromium", width=1600) as page:
        try:
            # The flow run's page, its Artifacts tab. On a busy CI machine a click could land
            # before the page had hydrated and switch nothing, so click until the tab shows.
            page.goto(f"{local_prefect.url}/runs/flow-run/{nightly_run.flow_run_id}")
            page.wait_for_load_state("networkidle")
            open_tab(page, "Artifacts", shows="blend-summary-nightly")
            page.get_by_text("blend-run-nightly").first.wait_for()
            run_page = page.inner_text("body")
            # Each artifact on its own page (ids from the API), rendered.
            page.goto(f"{local_prefect.url}/artifacts/artifact/{by_type['markdown']}")
            page.get_by_text("prefix sharing kept").first.wait_for()
            summary = page.inner_text("body")
            page.goto(f"{local_prefect.url}/artifacts/artifact/{by_type['table']}")
            page.get_by_text("prefix_cache_hit_rate").first.wait_for()
            table = page.inner_text("body")
        finally:
            # Kept in pytest's tmp dir: what the page showed, also when a wait timed out.
            page.screenshot(path=str(tmp_path / "last-page.png"), full_page=True)
    for key in ("blend-summary-nightly", "blend-run-nightly"):  # listed on the run's page
        assert key in run_page
    for text in ("Plan", "Profile", "planner\tdfs", "requests\t34", "prefix_cache_hit_rate"):
        assert text in summary
    for text in ("tokens_per_s", "completed"):
        assert text in table
