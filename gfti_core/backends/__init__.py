"""Backends that ship with the engine. Host backends (ComfyUI, A1111, Forge) live with their host adapters."""
