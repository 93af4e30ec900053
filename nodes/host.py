"""The few ComfyUI services the nodes use, imported lazily (the pack imports without ComfyUI present)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..gfti_core.errors import UnsafeNameError
from ..gfti_core.safe_io import display_path

log = logging.getLogger(__name__)


def send_event(event: str, data: dict) -> None:
    """Broadcast a websocket message when a server runs (thread-safe); a no-op in-process or headless."""
    try:
        from server import PromptServer
    except ImportError:
        return
    instance = getattr(PromptServer, "instance", None)
    if instance is not None:
        instance.send_sync(event, data)


def embeddings_folder() -> Path:
    import folder_paths

    return Path(folder_paths.get_folder_paths("embeddings")[0])


def input_folder(name: str) -> Path:
    """An absolute folder as given, or a folder inside ComfyUI's input directory (never outside it)."""
    import folder_paths

    if os.path.isabs(name):
        return Path(name)
    base = Path(folder_paths.get_input_directory()).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise UnsafeNameError(f"folder {display_path(name)!r} leads outside ComfyUI's input folder {base}; give a "
                              "folder name inside it or an absolute path")
    return target


class Interrupts:
    """ComfyUI's cancel button for one node run. The progress hook of a server raises (and clears the flag)
    on the first update after /interrupt; the engine polls `should_stop` between chunks. Either way the run
    ends after its last complete generation, and `restore()` re-arms the flag so later nodes stop too."""

    def __init__(self):
        import comfy.model_management as mm

        self.mm, self.hit = mm, False

    def should_stop(self) -> bool:
        return self.hit or self.mm.processing_interrupted()

    def guarded(self, fn, *args) -> None:
        try:
            fn(*args)
        except self.mm.InterruptProcessingException:
            self.hit = True

    def restore(self) -> None:
        if self.hit:
            self.mm.interrupt_current_processing(True)
