"""The one way every backend puts the learned vectors into a prompt: a forward hook on the text encoder's
token-embedding module that overwrites the placeholder token's rows."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def inject_vectors(embedding: torch.nn.Module, placeholder_id: int, vectors: torch.Tensor | None) -> Iterator[None]:
    """While active, the k-th placeholder token of row b embeds as vectors[b, k % N] (vectors [B, N, D]).
    The ids are read from the module's own input, so a host that splits or pads prompts its own way (A1111's
    75-token chunks) still gets the right rows; calls without the placeholder (an empty prompt) pass through."""
    if vectors is None:
        yield
        return

    def hook(_module, inputs, output):
        mask = inputs[0] == placeholder_id
        if not bool(mask.any()):
            return output
        if mask.shape[0] != vectors.shape[0]:
            raise RuntimeError(f"text encoder got {mask.shape[0]} rows for {vectors.shape[0]} candidate rows")
        rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]
        occurrence = ((mask.cumsum(1) - 1) % vectors.shape[1])[mask]
        output = output.clone()  # autograd-safe: gradient TI trains through this hook
        output[mask] = vectors.to(output.device, output.dtype)[rows.cpu(), occurrence.cpu()]
        return output

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
