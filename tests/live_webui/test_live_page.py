"""The GFTI tab in the real webui page, in Debian's headless Chromium: the tab renders, Start runs the page's
own JavaScript (javascript/gfti.js → the webui's requestProgress) and the message shows in the tab.

GFTI_WEBUI_SCREENSHOTS=docs/img writes the screenshot there (docs/a1111.md shows them)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CDP = HERE.parent / "comfy" / "cdp.py"

pytestmark = pytest.mark.timeout(1500)  # the first test of a host waits for its boot


def browser_class():
    spec = importlib.util.spec_from_file_location("gfti_cdp", CDP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.CHROMIUM.exists():
        pytest.skip(f"{module.CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    return module.Browser


APP = "(window.gradioApp ? gradioApp() : document)"


def open_tab(browser, url: str) -> None:
    browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
    browser.call("Page.enable")
    browser.call("Page.navigate", url=url)
    found = browser.wait_for(f"(() => {{ const b = [...{APP}.querySelectorAll('#tabs button, .tab-nav button')]"
                             ".find(b => b.textContent.trim() === 'GFTI'); if (b) b.click(); return !!b; })()", 120)
    assert found, "the GFTI tab button is on the page"
    assert browser.wait_for(f"!!{APP}.querySelector('#gfti_start') && "
                            f"{APP}.querySelector('#gfti_start').offsetParent !== null", 30)


def set_text(browser, elem_id: str, value: str) -> None:
    browser.evaluate(f"(() => {{ const el = {APP}.querySelector('#{elem_id} textarea, #{elem_id} input');"
                     f" el.value = {value!r}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }})()")


def test_start_in_the_page_shows_the_message_in_the_tab(webui, tmp_path):
    Browser = browser_class()
    browser = Browser(tmp_path / "chromium.log")
    try:
        open_tab(browser, webui.url)
        assert browser.evaluate("typeof gfti_submit === 'function' && typeof requestProgress === 'function'")
        set_text(browser, "gfti_token", f"page-{webui.name}")
        browser.evaluate(f"{APP}.querySelector('#gfti_start').click()")
        # Gradio shows a timer in a pending output; wait for the handler's own words (or the webui's error)
        text = browser.wait_for(f"(() => {{ const t = {APP}.querySelector('#gfti_message').innerText;"
                                " return /GFTI|rror/.test(t) ? t : ''; })()", 180)
        assert "no image folder given" in text and "Error" not in text, text
        shots = Path(os.environ.get("GFTI_WEBUI_SCREENSHOTS", tmp_path))
        shot = browser.screenshot(shots / f"{webui.name}-gfti-tab.png")
        assert shot.stat().st_size > 10_000
    finally:
        browser.close()
