"""GFTI's AUTOMATIC1111 / Forge face: the tab, the training job and the backends over the webui's model.

Importing this package imports no webui module; `host_a1111` / `host_forge` import them inside functions.
"""
