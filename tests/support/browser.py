"""Headless Chromium for the Prefect UI tests: Debian's /usr/bin/chromium driven by Playwright
(never `playwright install`, which downloads a browser and fails without internet;
.ci/install-chromium installs Debian's)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"

needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"{CHROMIUM} is not installed (apt-get install -y chromium chromium-driver)",
)


@contextmanager
def chromium_page(user_data_dir: Path, width: int = 1400, height: int = 1000) -> Iterator[Page]:
    """A page in a fresh headless Chromium profile; waits up to 60 s by default (the UI's
    first load on a busy 2-core machine)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=CHROMIUM,
            headless=True,
            viewport={"width": width, "height": height},
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()
