"""The nightly deployment's "Run > Custom run" form as the Prefect UI renders it, in headless
Chromium: fields in reading order, human titles, no `Property is type "None"` on empty
optional fields, the deadline's time zone said. A screenshot of the form is kept in the
test's tmp_path (docs/prefect-form.png is one made the same way)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.browser import chromium_page, needs_chromium
from tests.support.local_prefect import LocalPrefect

pytestmark = [pytest.mark.prefect, needs_chromium]

DEPLOYMENT = "blend-pipeline/nightly"

# Each form field's label and its own description (a group's nested fields come after it).
FIELDS_JS = """() => Array.from(document.querySelectorAll('.schema-form-property')).map(el => [
    el.querySelector('.schema-form-property__label')?.innerText ?? '',
    el.querySelector('.schema-form-property__description')?.innerText ?? '',
])"""

# Labels the test looks for. Fields with a default value render after the others (once the
# deployment's defaults are filled in), so the page is read when all of them are there.
EXPECTED = ["Input file", "Dataset", "Planning", "Engine settings", "KV cache (GiB)", "Engines"]
EXPECTED += ["Seed", "Capacity deadline", "Store folder", "Results URI"]
# The vLLM flags' inputs: for each label, whether it is a switch (a toggle) and the choice a
# select shows (null: no select).
FLAGS_JS = """labels => labels.map(label => {
    const el = Array.from(document.querySelectorAll('.schema-form-property')).find(p =>
        p.querySelector('.schema-form-property__label')?.innerText
            .replace(/ \\(Optional\\)$/, '') === label);
    if (!el) return [label, null, ''];
    const input = el.querySelector('.schema-form-property__fields');
    const choice = input.querySelector('.p-select-button__value');
    return [label, input.querySelector('[role="switch"]') !== null, choice?.innerText ?? null];
})"""
ALL_THERE_JS = """expected => {
    const labels = Array.from(document.querySelectorAll('.schema-form-property__label'))
        .map(el => el.innerText.replace(/ \\(Optional\\)$/, ''));
    return expected.every(label => labels.includes(label));
}"""


def test_the_custom_run_form_reads_in_order(local_prefect: LocalPrefect, tmp_path: Path) -> None:
    with (
        temporary_settings({PREFECT_API_URL: local_prefect.api_url}),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    shot = tmp_path / "custom-run-form.png"
    with chromium_page(tmp_path / "chromium", height=3200) as page:  # the whole form in view
        try:
            page.goto(f"{local_prefect.url}/deployments/deployment/{deployment.id}/run")
            page.wait_for_function(ALL_THERE_JS, arg=EXPECTED)
            fields = [
                (label.removesuffix(" (Optional)"), description)
                for label, description in page.evaluate(FIELDS_JS)
            ]
            body = page.inner_text("body")
            flags = page.evaluate(FLAGS_JS, ["Enforce eager", "Chunked prefill"])
        finally:  # what the page showed, also when a wait timed out
            page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    labels = [label for label, _ in fields]
    assert labels[:5] == ["options", "Input file", "Dataset", "Model", "Only new prompts"]
    order = ["Input file", "Dataset", "Planning", "Engine settings", "Engines"]
    order += ["Capacity deadline", "Store folder", "Results URI"]
    assert [labels.index(label) for label in order] == sorted(labels.index(x) for x in order)
    assert "KV cache (GiB)" in labels and "Kv Cache Gib" not in body
    assert "Max Num Seqs" not in body and "Input Path" not in body
    assert 'Property is type "None"' not in body
    deadline = dict(fields)["Capacity deadline"]
    assert "HH:MM" in deadline and "local time zone" in deadline
    # vLLM's flags: a choice that shows vLLM's default, not an off switch (chunked prefill's
    # default is on)
    assert [tuple(flag) for flag in flags] == [
        ("Enforce eager", False, "default"),
        ("Chunked prefill", False, "default"),
    ]
