"""ComfyUI entry point of GFTI (gradient-free textual inversion); ComfyUI imports this folder as a package.

Importing never fails ComfyUI: without the `cma` package the nodes are left out and the log says how to
install it. No network, no threads, no sys.path changes here.
"""
import importlib.util
import logging

log = logging.getLogger("gfti")

WEB_DIRECTORY = "./web"
NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

if importlib.util.find_spec("cma") is None:
    log.error("GFTI: the Python package 'cma' is missing, so the GFTI nodes are not loaded. Install it into the "
              "Python that runs ComfyUI (`python -m pip install cma`, or let ComfyUI-Manager run install.py) and "
              "restart ComfyUI.")
else:
    try:
        from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    except ImportError as exc:
        log.error("GFTI: the nodes are not loaded because %s; install it into ComfyUI's Python and restart.", exc)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
