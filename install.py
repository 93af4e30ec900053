"""Installs GFTI's one extra dependency, `cma`, when it is missing — for both hosts that run this file:

* ComfyUI-Manager runs it after installing the pack (plain `python install.py`);
* AUTOMATIC1111 / Forge run it at launch with their `launch` module importable; then the webui's own
  `launch.is_installed` / `launch.run_pip` are used, as extensions are expected to.

Nothing else is installed or upgraded: torch, numpy, safetensors and Pillow belong to the host.
"""
import importlib.util
import subprocess
import sys

REQUIREMENTS = {"cma": "cma>=4.0"}  # import name -> pip requirement


def missing() -> list[str]:
    return [req for module, req in REQUIREMENTS.items() if importlib.util.find_spec(module) is None]


def install_with_webui(launch) -> int:
    for module, req in REQUIREMENTS.items():
        if not launch.is_installed(module):
            launch.run_pip(f"install {req}", f"{module} for GFTI")
    return 0


def install_with_pip() -> int:
    todo = missing()
    if not todo:
        print("GFTI: dependencies already installed")
        return 0
    print(f"GFTI: installing {' '.join(todo)} into {sys.executable}")
    return subprocess.call([sys.executable, "-m", "pip", "install", *todo])


def main() -> int:
    try:
        import launch  # present only when AUTOMATIC1111 / Forge runs this file
    except ImportError:
        return install_with_pip()
    return install_with_webui(launch)


if __name__ == "__main__":  # both hosts run it as a script (A1111/Forge with the webui root on PYTHONPATH)
    sys.exit(main())
