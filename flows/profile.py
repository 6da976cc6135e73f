"""Prefect flow: tokenize a dataset and compute its SQL profiles."""

from __future__ import annotations

from prefect import flow, task
from pydantic import Field

from blend.profile.stage import ProfileReport, profile_dataset
from blend.profile.token_batches import TokenizeOptions
from flows.logs import log_stage
from flows.options import DatasetName, ModelOptions
from flows.retry import is_transient


class ProfileOptions(ModelOptions):
    form_order = ("dataset", "snapshot", "model", "store", "workers", "ray")

    dataset: DatasetName = Field(title="Dataset", description="Dataset name")
    snapshot: int | None = Field(None, title="Snapshot", description="Snapshot (default: latest)")
    workers: int | None = Field(
        None,
        ge=1,
        title="Tokenizer workers",
        description="Processes that tokenize (default: one per core; on Ray: actors, default "
        "one per CPU of the cluster)",
    )
    ray: bool = Field(
        False,
        title="Tokenize on Ray",
        description="Tokenize on Ray actors ($RAY_ADDRESS, else a local cluster): for a dataset "
        "too large for one machine",
    )


profile_task = task(
    name="profile", retries=2, retry_delay_seconds=10, retry_condition_fn=is_transient
)(profile_dataset)


@flow(name="blend-profile")
def profile_flow(options: ProfileOptions) -> ProfileReport:
    store = options.open_store()
    report = profile_task(
        store,
        options.dataset,
        options.model_dir(store),
        snapshot=options.snapshot,
        tokenize=TokenizeOptions(workers=options.workers, ray=options.ray),
    )
    log_stage("profile", report)
    return report
