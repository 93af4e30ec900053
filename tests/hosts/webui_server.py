"""Boot a webui laid out by webui_layout.py headless on CPU, on 127.0.0.1 and a free port; stop it by its pid.

    python tests/hosts/webui_server.py a1111|forge      # boots, prints the URL, Ctrl-C stops it
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script beside webui_layout.py
import webui_layout  # noqa: E402

log = logging.getLogger("webui_server")

COMMON_FLAGS = ["--skip-prepare-environment", "--skip-torch-cuda-test", "--skip-version-check", "--skip-install",
                "--api", "--no-download-sd-model"]
HOST_FLAGS = {
    "a1111": ["--use-cpu", "all", "--no-half", "--precision", "full"],
    "forge": ["--always-cpu", "--all-in-fp32"],
}


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    embeddings: Path

    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def post(self, path: str, body: dict | None = None, timeout: float = 600):
        req = urllib.request.Request(self.url + path, data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(spec: webui_layout.HostSpec) -> str:
    """'' when the host is laid out, else why not (the tests skip with this reason)."""
    if not spec.venv_python.is_file() or not (spec.root / "venv" / "gfti.stamp").is_file():
        return f"{spec.name} is not laid out under {spec.root}: run python tests/hosts/webui_layout.py {spec.name}"
    if not (spec.root / "venv" / "gfti-extension.stamp").is_file():
        return f"{spec.name}: the extension's requirements are missing; run python tests/hosts/webui_layout.py {spec.name}"
    return ""


def command(spec: webui_layout.HostSpec, port: int, workdir: Path) -> list[str]:
    ckpt = spec.webui / "models" / "Stable-diffusion" / webui_layout.checkpoint_path().name
    return [str(spec.venv_python), "launch.py", *COMMON_FLAGS, *HOST_FLAGS[spec.name], "--port", str(port),
            "--ckpt", str(ckpt), "--embeddings-dir", str(workdir / "embeddings"),
            "--ui-settings-file", str(workdir / "config.json")]


def environment(spec: webui_layout.HostSpec) -> dict[str, str]:
    env = dict(os.environ, HF_HOME=str(spec.root / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)
    return env


def wait_until_serving(server: Server, timeout: float) -> None:
    """The API answers and the checkpoint is loaded (the model loads after the port opens)."""
    deadline = time.monotonic() + timeout
    # No request before the webui says it has started: it adds its API middleware after the port opens, and a
    # request in between makes starlette refuse that ("Cannot add middleware after an application has started").
    while b"Startup time" not in server.log_path.read_bytes() and time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        time.sleep(1)
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            if server.get("/sdapi/v1/options", timeout=10).get("sd_model_checkpoint"):
                return
        time.sleep(2)
    raise TimeoutError(f"{server.name} did not serve within {timeout:.0f} s:\n{server.log_tail()}")


@contextlib.contextmanager
def running(name: str, workdir: Path, timeout: float = 600):
    spec = webui_layout.HOSTS[name]
    webui_layout.copy_extension(spec)  # the checkout as it is now
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "embeddings").mkdir(exist_ok=True)
    port = free_port()
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(command(spec, port, workdir), cwd=spec.webui, env=environment(spec),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, f"http://127.0.0.1:{port}", proc, log_path, workdir / "embeddings")
    try:
        t0 = time.monotonic()
        wait_until_serving(server, timeout)
        log.info("%s serving at %s after %.0f s", name, server.url, time.monotonic() - t0)
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the webui's own process group (it started its own session), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    name = (argv or sys.argv[1:] or ["a1111"])[0]
    why = ready(webui_layout.HOSTS[name])
    if why:
        log.error("%s", why)
        return 1
    import tempfile

    def terminate(*_):
        raise KeyboardInterrupt  # so `running` stops the webui's process group on SIGTERM too

    signal.signal(signal.SIGTERM, terminate)

    with tempfile.TemporaryDirectory(prefix=f"gfti-{name}-") as tmp, running(name, Path(tmp)) as server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
