"""The real frontend of each host in headless Chromium with the pack: ComfyUI 2024-03's built-in frontend and the
current ComfyUI with the current `comfyui-frontend-package`, the latter in both renderings (the classic canvas
and Nodes 2.0, setting `Comfy.VueNodes.Enabled`).

Each run loads every example workflow (no missing node types), then the SD1.5 example adapted to the tiny
checkpoint, with its second ES step moved into a subgraph where the frontend has subgraphs. It queues it from
the page and, while the first ES step runs, watches its live chart: the DOM widget's generation counter grows,
its pixels on screen change, and the element is what the page shows at that spot. It then interrupts from the
page, queues a short run and reads the saved embedding's name on the Save node, and the subgraph step's chart
after opening the subgraph. Screenshots go to $GFTI_TEST_ARTIFACTS (default: a tmp dir); with
GFTI_DOCS_SCREENSHOT=1 also to docs/img (comfyui_gfti.png: current frontend, Nodes 2.0; comfyui_gfti_classic.png:
classic canvas).
"""
from __future__ import annotations

import io
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from cdp import CHROMIUM
from comfy_env import ROOT

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install chromium)", allow_module_level=True)

from cdp import Browser  # noqa: E402
from test_comfy_server import TOKEN, _get, _prompt, server  # noqa: E402,F401  (server: the module's fixture)

pytestmark = pytest.mark.timeout(1500)  # a hang guard, as in test_comfy_server.py
DOCS = ROOT / "docs" / "img"
SCRIPT = "/extensions/gfti/gfti.js"  # the server fixture links the pack as custom_nodes/gfti
STEP, SUBGRAPH_STEP, SAVE = 4, 5, 7

NODES = "(app.graph.nodes ?? app.graph._nodes)"

# Load a workflow, set every widget from the API prompt the server test queues (by node type and widget name)
# plus per-node generations, mute the nodes not to run; where the frontend has subgraphs, move the second ES
# step into one. Returns the execution id of every ES step.
LOAD = """
async ([workflow, values, generations, muted, nest]) => {
  await app.loadGraphData(workflow);
  for (const node of %(nodes)s) {
    if (muted.includes(Number(node.id))) node.mode = 2;
    const v = {...(values[node.type] ?? {})};
    if (node.type === "GFTIESOptimizeStep") v.generations = generations[String(node.id)];
    for (const w of node.widgets ?? []) if (w.name in v) w.value = v[w.name];
  }
  const ids = {"%(step)d": "%(step)d", "%(sub)d": "%(sub)d"};
  if (nest && app.graph.convertToSubgraph) {
    const { node } = app.graph.convertToSubgraph(new Set([app.graph.getNodeById(%(sub)d)]));
    ids["%(sub)d"] = `${node.id}:${node.subgraph.nodes.find((n) => n.type === "GFTIESOptimizeStep").id}`;
  }
  return ids;
}
""" % {"nodes": NODES, "step": STEP, "sub": SUBGRAPH_STEP}

MISSING = """
async (workflow) => {
  await app.loadGraphData(workflow);
  const known = new Set(Object.keys(LiteGraph.registered_node_types));
  return workflow.nodes.map((n) => n.type).filter((t) => !known.has(t));
}
"""

# The chart widget of the node with this execution id: its counter, its image, where the page shows it.
CHART = """
((id) => {
  let graph = app.rootGraph ?? app.graph, node = null;
  for (const part of String(id).split(":")) { node = graph.getNodeById(Number(part)); graph = node?.subgraph; }
  const el = node?.widgets?.find((w) => w.name === "gfti_chart")?.element;
  if (!el) return null;
  const r = el.getBoundingClientRect(), img = el.querySelector("img");
  const hit = r.width > 0 ? document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 3) : null;
  return {generation: Number(el.dataset.generation), src: img.src.length, visible: r.width > 40 && r.height > 40
          && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth && !!hit && el.contains(hit),
          rect: {x: r.x, y: r.y, width: r.width, height: r.height}};
})(%s)
"""

SAVE_TEXT = """
(() => {
  const node = app.graph.getNodeById(%d);
  const el = node?.widgets?.find((w) => w.name === "gfti_result")?.element;
  if (!el) return null;
  const r = el.getBoundingClientRect();
  return {text: el.textContent, visible: r.width > 40 && r.height > 10};
})()
""" % SAVE


def _adapted(url: str) -> tuple[dict, dict]:
    """The example workflow and the widget values that make it the server test's run (tiny checkpoint, 64 px)."""
    workflow = json.loads((ROOT / "example_workflows" / "gfti_sd15.json").read_text())
    values: dict[str, dict] = {}
    for node in _prompt(url, generations=1).values():
        plain = {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}
        values.setdefault(node["class_type"], {}).update(plain)
    del values["GFTIESOptimizeStep"]["generations"]  # set per node
    values["GFTIEncodeWithInversion"] = {"text": f"a photo of {TOKEN} on a beach"}
    values["EmptyLatentImage"] = {"width": 64, "height": 64}
    values["KSampler"] = {"steps": 4}
    return workflow, values


def _frame(browser: Browser, ids: str = "[1, 2, 3, 4, 5, 6, 7]") -> None:
    """Fit these nodes of the shown graph into the viewport, below the frontend's menus."""
    browser.evaluate("""(async () => {
      const nodes = (app.canvas.graph.nodes ?? app.canvas.graph._nodes).filter((n) => %s.includes(Number(n.id)));
      const x0 = Math.min(...nodes.map((n) => n.pos[0])), y0 = Math.min(...nodes.map((n) => n.pos[1]));
      const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
      const y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
      const menu = document.querySelector(".comfy-menu")?.getBoundingClientRect();
      const free = innerWidth - (menu ? menu.width + 30 : 0);
      const scale = Math.min((free - 80) / (x1 - x0), (innerHeight - 160) / (y1 - y0 + 40), 1);
      app.canvas.ds.scale = scale;
      app.canvas.ds.offset = [110 / scale - x0, 100 / scale - y0];
      app.canvas.setDirty(true, true);
      await new Promise((r) => setTimeout(r, 300));
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    })()""" % ids)


def _pixels(browser: Browser, rect: dict):
    """What the screen shows in `rect` (the page's own compositing, not the element's source)."""
    import base64

    from PIL import Image

    clip = {**{k: round(v) for k, v in rect.items()}, "scale": 1}
    data = browser.call("Page.captureScreenshot", format="png", clip=clip)["data"]
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def _settled_generation(browser: Browser, node_id: str, quiet: float = 2.0, timeout: float = 30) -> int:
    """The generation the chart shows once its websocket messages have all arrived: /history reports the
    interrupted prompt as soon as the server thread ends it, while the last generation's chart message (a PNG
    of some 30 kB) may still be on its way to the page."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        now = browser.evaluate(CHART % json.dumps(node_id))["generation"]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.2)
    return last


def _wait_history(url: str, known: set, timeout: float) -> dict:
    """The first prompt not in `known` to finish (the server is shared by several tests)."""
    deadline = time.monotonic() + timeout
    while True:
        done = {k: h for k, h in _get(url + "/history").items() if k not in known
                and h["status"].get("status_str") in ("success", "error")}
        if done:
            (run,) = done.values()
            return run
        assert time.monotonic() < deadline, f"the queued workflow did not finish: {_get(url + '/queue')}"
        time.sleep(0.5)


def _setting(url: str, key: str, value) -> None:
    req = urllib.request.Request(f"{url}/settings/{key}", json.dumps(value).encode(),
                                 {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).close()


def _open_page(browser: Browser, url: str, kind: str, rendering: str) -> None:
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
    if kind != "2024":  # the current frontend keeps its settings on the server
        _setting(url, "Comfy.VueNodes.Enabled", rendering == "nodes2")
        _setting(url, "Comfy.TutorialCompleted", True)
    browser.call("Page.navigate", url=url + "/")
    assert browser.wait_for("!!(window.app?.graph && app.extensions?.some((e) => e.name === 'gfti.nodes'))", 120), \
        "ComfyUI did not start in the page or did not register the gfti.nodes extension"
    if kind != "2024":
        enabled = browser.evaluate("app.extensionManager.setting.get('Comfy.VueNodes.Enabled')")
        assert enabled is (rendering == "nodes2"), enabled


def _page_errors(browser: Browser) -> list[str]:
    exceptions = [json.dumps(e["exceptionDetails"]) for e in browser.of("Runtime.exceptionThrown")]
    errors = [json.dumps(e["args"]) for e in browser.of("Runtime.consoleAPICalled") if e["type"] in ("error", "assert")]
    errors += [json.dumps(e["entry"]) for e in browser.of("Log.entryAdded") if e["entry"]["level"] == "error"]
    return [e for e in exceptions + errors if "gfti" in e.lower()]


@pytest.mark.parametrize("rendering", ["classic", "nodes2"])
def test_live_chart_interrupt_and_saved_name_in_the_real_frontend(server, rendering, tmp_path):
    url, _, kind = server
    if kind == "2024" and rendering == "nodes2":
        pytest.skip("ComfyUI 2024-03's frontend has no Nodes 2.0 rendering")
    docs = os.environ.get("GFTI_DOCS_SCREENSHOT") == "1"
    artifacts = Path(os.environ.get("GFTI_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    browser = Browser(log_path=artifacts / f"chromium-{kind}-{rendering}.log")
    try:
        _open_page(browser, url, kind, rendering)
        for example in sorted((ROOT / "example_workflows").glob("*.json")):
            missing = browser.evaluate(f"({MISSING})({example.read_text()})")
            assert missing == [], f"{example.name} in ComfyUI {kind}: unknown node types {missing}"

        # 1. a long run: watch the first step's chart while it runs, then interrupt from the page
        workflow, values = _adapted(url)
        muted = list(range(8, 14))
        args = [workflow, values, {str(STEP): 60, str(SUBGRAPH_STEP): 1}, muted, kind != "2024"]
        ids = browser.evaluate(f"({LOAD})({json.dumps(args)})")
        _frame(browser)
        before = browser.evaluate(CHART % json.dumps(ids[str(STEP)]))
        assert before is not None and before["generation"] == 0, before
        known = set(_get(url + "/history"))
        browser.evaluate("app.queuePrompt(0, 1)")
        seen, shots = [], []
        deadline = time.monotonic() + 600  # a hang guard: a cold first generation on 2 busy cores is slow
        while len(shots) < 2:
            assert time.monotonic() < deadline, f"the live chart did not update: {seen[-3:]}"
            chart = browser.evaluate(CHART % json.dumps(ids[str(STEP)]))
            if chart["generation"] >= 1 and (not seen or chart["generation"] > seen[-1]["generation"]):
                seen.append(chart)
                assert chart["visible"], chart  # shown where it sits, not covered or off-screen
                shots.append(_pixels(browser, chart["rect"]))
            time.sleep(0.2)
        browser.screenshot(artifacts / f"comfyui-{kind}-{rendering}-running.png")
        assert shots[0].tobytes() != shots[1].tobytes(), "the chart on screen did not change between generations"
        browser.evaluate("fetch('/interrupt', {method: 'POST'}).then((r) => r.status)")  # as the page's button
        first = _wait_history(url, known, 300)
        known = set(_get(url + "/history"))
        assert first["status"]["status_str"] == "error", first["status"]  # interrupted
        assert any(m[0] == "execution_interrupted" for m in first["status"]["messages"])
        stopped = _settled_generation(browser, ids[str(STEP)])
        # ended early (a run continues from earlier ones on the same server: count from the first one seen)
        assert seen[-1]["generation"] <= stopped < seen[0]["generation"] + 59, (seen, stopped)

        # 2. a short run: the first step continues, the second (in its subgraph) runs, the Save node shows the name
        gens = {str(STEP): 12 if docs else 1, str(SUBGRAPH_STEP): 8 if docs else 1}
        browser.evaluate("""(() => { for (const n of %s) if (n.type === "GFTIESOptimizeStep")
                               n.widgets.find((w) => w.name === "generations").value = %s[String(n.id)] ?? 1;
                             const inner = app.graph.getNodeById(%s)?.subgraph?.nodes
                               .find((n) => n.type === "GFTIESOptimizeStep");
                             if (inner) inner.widgets.find((w) => w.name === "generations").value = %d;
                             return app.queuePrompt(0, 1); })()"""
                         % (NODES, json.dumps(gens), ids[str(SUBGRAPH_STEP)].split(":")[0], gens[str(SUBGRAPH_STEP)]))
        second = _wait_history(url, known, 900 if docs else 300)
        assert second["status"]["status_str"] == "success", second["status"]
        saved = browser.wait_for(f"(() => {{ const s = {SAVE_TEXT}; return s?.text ? s : null; }})()", 30)
        assert saved and saved["text"].startswith(f"embedding:{TOKEN}") and saved["visible"], saved
        assert browser.evaluate(CHART % json.dumps(ids[str(STEP)]))["generation"] == stopped + gens[str(STEP)]
        _frame(browser)
        shot = browser.screenshot(artifacts / f"comfyui-{kind}-{rendering}.png")
        print(f"\nscreenshot: {shot}")
        if docs and kind != "2024":
            name = "comfyui_gfti.png" if rendering == "nodes2" else "comfyui_gfti_classic.png"
            browser.screenshot(DOCS / name)
            print(f"docs screenshot: {DOCS / name}")

        # 3. the step inside the subgraph: its chart holds the whole run and shows once the subgraph is open
        inner = browser.evaluate(CHART % json.dumps(ids[str(SUBGRAPH_STEP)]))
        assert inner["generation"] == stopped + gens[str(STEP)] + gens[str(SUBGRAPH_STEP)], inner
        if ":" in ids[str(SUBGRAPH_STEP)]:
            outer = ids[str(SUBGRAPH_STEP)].split(":")[0]
            browser.evaluate(f"(() => {{ const n = app.graph.getNodeById({outer}); "
                             "app.canvas.openSubgraph(n.subgraph, n); })()")
            inner_id = int(ids[str(SUBGRAPH_STEP)].split(":")[1])
            _frame(browser, f"[{inner_id}]")
            inner = browser.wait_for(f"(() => {{ const c = {CHART % json.dumps(ids[str(SUBGRAPH_STEP)])}; "
                                     "return c?.visible ? c : null; })()", 20)
            assert inner, browser.evaluate(CHART % json.dumps(ids[str(SUBGRAPH_STEP)]))
            browser.screenshot(artifacts / f"comfyui-{kind}-{rendering}-subgraph.png")

        responses = {r["response"]["url"]: r["response"]["status"] for r in browser.of("Network.responseReceived")}
        assert responses.get(url + SCRIPT) == 200, sorted(responses)
        assert not _page_errors(browser), _page_errors(browser)
    finally:
        browser.close()
