"""Prefect flow: tokenize a dataset and compute its SQL profiles."""

from __future__ import annotations

from prefect import flow, task
from pydantic import Field

from blend.profile.stage import ProfileReport, profile_dataset
from flows.logs import log_stage
from flows.options import DatasetName, ModelOptions
from flows.retry import is_transient


class ProfileOptions(ModelOptions):
    form_order = ("dataset", "snapshot", "model", "store")

    dataset: DatasetName = Field(title="Dataset", description="Dataset name")
    snapshot: int | None = Field(None, title="Snapshot", description="Snapshot (default: latest)")


profile_task = task(
    name="profile", retries=2, retry_delay_seconds=10, retry_condition_fn=is_transient
)(profile_dataset)


@flow(name="blend-profile")
def profile_flow(options: ProfileOptions) -> ProfileReport:
    store = options.open_store()
    report = profile_task(
        store, options.dataset, options.model_dir(store), snapshot=options.snapshot
    )
    log_stage("profile", report)
    return report
