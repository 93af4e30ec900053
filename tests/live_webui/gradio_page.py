"""The GFTI tab as the page sees it: the running server's own Gradio /config, and its Start dependency
called over HTTP with the fn_index and the inputs the page sends (Gradio 3.41 in A1111, 4.40 in Forge)."""
from __future__ import annotations

import base64
import io
import json
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass
class Dependency:
    fn_index: int
    input_ids: list[str]          # elem_id of each input, in order
    defaults: dict[str, Any]      # elem_id -> the value the page shows before the user edits it
    output_types: list[str]
    js: str | None


def _targets(dep: dict) -> list[int]:
    return [t[0] if isinstance(t, (list, tuple)) else t for t in dep.get("targets", [])]


def dependency(config: dict, button_elem_id: str) -> Dependency:
    comps = {c["id"]: c for c in config["components"]}
    ids = {c.get("props", {}).get("elem_id"): c["id"] for c in config["components"]}
    button = ids[button_elem_id]
    for index, dep in enumerate(config["dependencies"]):
        if button in _targets(dep):
            inputs = [comps[i]["props"].get("elem_id") for i in dep["inputs"]]
            defaults = {comps[i]["props"].get("elem_id"): comps[i]["props"].get("value") for i in dep["inputs"]}
            return Dependency(index, inputs, defaults, [comps[o]["type"] for o in dep["outputs"]], dep.get("js"))
    raise LookupError(f"no dependency is triggered by #{button_elem_id}")


def page_config(url: str) -> dict:
    with urllib.request.urlopen(url + "/config", timeout=60) as r:
        return json.loads(r.read())


def predict(url: str, dep: Dependency, values: dict[str, Any], timeout: float = 900) -> list:
    """POST the dependency as the page's fetch would (`/run/predict`, fn_index + data in input order)."""
    data = [values.get(name, dep.defaults.get(name)) for name in dep.input_ids]
    body = {"fn_index": dep.fn_index, "data": data, "session_hash": uuid.uuid4().hex[:11]}
    req = urllib.request.Request(url + "/run/predict", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())["data"]


def task_id() -> str:
    """What javascript/gfti.js sends as the first input (the webui's `randomId()` format)."""
    return f"task({uuid.uuid4().hex[:15]})"


def open_image(url: str, value) -> Image.Image:
    """An Image/Gallery item as Gradio 3 (data URL, or {name, is_file}) or Gradio 4 ({path, url}) sends it."""
    if isinstance(value, (list, tuple)):  # Gradio 3 gallery item: [file, caption]
        value = value[0]
    if isinstance(value, dict) and "image" in value:  # Gradio 4 gallery item: {image: FileData, caption}
        value = value["image"]
    if isinstance(value, str) and value.startswith("data:"):
        return Image.open(io.BytesIO(base64.b64decode(value.split(",", 1)[1])))
    if isinstance(value, dict):
        if value.get("url"):
            with urllib.request.urlopen(value["url"] if value["url"].startswith("http") else url + value["url"]) as r:
                return Image.open(io.BytesIO(r.read()))
        path = value.get("path") or value.get("name")
        if path and Path(path).is_file():
            return Image.open(path)
        with urllib.request.urlopen(f"{url}/file={path}") as r:
            return Image.open(io.BytesIO(r.read()))
    raise ValueError(f"not an image value: {str(value)[:200]}")


def poll_progress(url: str, id_task: str, until, interval: float = 0.5, timeout: float = 600) -> list[dict]:
    """/internal/progress as the page's progress bar polls it, with live previews, until `until()`."""
    seen, preview_id, deadline = [], -1, time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        body = {"id_task": id_task, "id_live_preview": preview_id, "live_preview": True}
        req = urllib.request.Request(url + "/internal/progress", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            p = json.loads(r.read())
        seen.append(p)
        preview_id = p.get("id_live_preview", preview_id)
        time.sleep(interval)
    return seen
