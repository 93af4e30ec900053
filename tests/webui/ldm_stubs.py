"""Make the real `ldm` package (stable-diffusion-sdkit 2.1.5) importable on a current stack.

Its pins are old: `pytorch_lightning.utilities.distributed.rank_zero_only` no longer exists, `omegaconf` and
`open_clip` are not installed here. Only what ldm touches at import time is stubbed; everything the loss path
runs (DDPM schedule, q_sample, apply_model, openaimodel UNet, AutoencoderKL, FrozenCLIPEmbedder) is real.
"""
from __future__ import annotations

import importlib.util
import sys
import types

import torch


class _LightningModule(torch.nn.Module):
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def stub_modules() -> dict[str, types.ModuleType]:
    """The modules to put into sys.modules (only those not importable for real)."""
    stubs: dict[str, types.ModuleType] = {}
    if importlib.util.find_spec("pytorch_lightning") is None:
        dist = _module("pytorch_lightning.utilities.distributed", rank_zero_only=lambda fn: fn)
        utilities = _module("pytorch_lightning.utilities", distributed=dist, rank_zero_only=lambda fn: fn)
        stubs.update({"pytorch_lightning": _module("pytorch_lightning", LightningModule=_LightningModule,
                                                   utilities=utilities),
                      "pytorch_lightning.utilities": utilities,
                      "pytorch_lightning.utilities.distributed": dist})
    if importlib.util.find_spec("omegaconf") is None:
        list_config = type("ListConfig", (list,), {})
        stubs["omegaconf"] = _module("omegaconf", ListConfig=list_config)
        stubs["omegaconf.listconfig"] = _module("omegaconf.listconfig", ListConfig=list_config)
    if importlib.util.find_spec("open_clip") is None:
        stubs["open_clip"] = _module("open_clip")
    return stubs


def install() -> list[str]:
    """Put the stubs into sys.modules; returns the names added (for removal after the session)."""
    added = [name for name, mod in stub_modules().items() if sys.modules.setdefault(name, mod) is mod]
    return added
