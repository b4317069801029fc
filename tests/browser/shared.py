"""What browser test modules share besides conftest.py's fixtures: `from .shared import BROWSER, expect`,
then `pytestmark = BROWSER`.

Owns: `BROWSER`, a module's marks (`browser`, and a skip where Debian's Chromium is missing), Playwright's
`expect` (importing this skips the importing test module where the playwright package is missing), and
checks on a page that several tabs' tests make. Ignores: the server, the browser and the page objects
(conftest.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import CHROMIUM

# importorskip raises pytest's module-level skip, which skips the test module whose import got here.
expect = pytest.importorskip(
    "playwright.sync_api", reason="the browser tier needs the playwright package (dev extra)"
).expect

BROWSER = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


def expect_no_error_overlay(page: Any, elem_ids: tuple[str, ...], after: str) -> None:
    """Only toasts report a refused run: no Gradio "Error" overlay covers any of `elem_ids`."""
    for elem_id in elem_ids:
        tracker = page.locator(f"#{elem_id} [data-testid=status-tracker]")
        if tracker.count():
            overlay = f"an Error overlay covers #{elem_id} after {after}"
            expect(tracker.first, overlay).to_have_class(re.compile(r"\bhide\b"))
