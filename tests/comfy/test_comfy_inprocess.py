"""Real ComfyUI, in-process graphs (inproc_comfy.py in a subprocess per host): train → save → encode,
re-queue continuation, interrupt, cross-host fitness equality with the diffusers backend."""
import pytest

from comfy_env import child_env, run_inner_pytest


@pytest.mark.timeout(1800)  # one ComfyUI import and ~20 short runs; minutes on a shared 2-core machine
def test_pack_in_real_comfyui(comfy_host, tiny_ckpt):
    kind, path = comfy_host
    out = run_inner_pytest("inproc_comfy.py", child_env(GFTI_COMFY_DIR=str(path), GFTI_TINY_CKPT=str(tiny_ckpt)))
    summary = "\n".join(line for line in out.stdout.splitlines() if "passed" in line or "failed" in line
                        or "relative fitness" in line or line.startswith(("PASSED", "FAILED", "ERROR")))
    print(f"[ComfyUI {kind}]\n{summary}")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
