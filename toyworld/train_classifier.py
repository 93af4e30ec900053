"""Train the toy-world classifier on generator ground truth.

    python -m toyworld.train_classifier --seed 0

Augmentations (blur, noise, colour jitter) make it robust to imperfect generated images.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from .classifier import ToyClassifier, save_classifier
from .worlds import World, get_world

log = logging.getLogger("toyworld.train_classifier")


def labelled_batch(rng: np.random.Generator, n: int, world: World | None = None):
    """n fresh generator images (all shape/colour pairs, held-out ones included) and labels."""
    world = world or get_world()
    scenes = [world.sample_scene(rng) for _ in range(n)]
    x = torch.from_numpy(np.stack([world.render(s) for s in scenes]))
    y = {k: torch.tensor([names.index(getattr(s, k)) for s in scenes]) for k, names in world.heads.items()}
    return x, y


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (5x5 kernel); sigma ~0 leaves the image unchanged."""
    r = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-r[None] ** 2 / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # [B,5]
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kc = k.repeat_interleave(c, dim=0)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kc[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kc[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    x = _blur(x, torch.rand(b, generator=gen) * 1.2)
    gain = 1 + 0.12 * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1)
    shift = 0.06 * (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1)
    x = x * gain + shift
    x = x + torch.randn(x.shape, generator=gen) * torch.rand(b, 1, 1, 1, generator=gen) * 0.06
    return x.clamp(0, 1)


def loss_fn(logits, y):
    return sum(F.cross_entropy(logits[k], y[k]) for k in y)


@torch.no_grad()
def accuracy(model, rng, n=1000, gen=None, world: World | None = None) -> dict[str, float]:
    """Accuracy per head (and all three right) on fresh images, augmented if gen is given."""
    model.eval()
    x, y = labelled_batch(rng, n, world)
    if gen is not None:
        x = augment(x, gen)
    pred = {k: v.argmax(1) for k, v in model(x).items()}
    ok = {k: pred[k] == y[k] for k in y}
    out = {k: ok[k].float().mean().item() for k in y}
    out["all"] = (ok["shape"] & ok["colour"] & ok["background"]).float().mean().item()
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--world", choices=("shapes", "tags"), default="shapes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--pool", type=int, default=12000, help="pre-rendered images reused with augmentation")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng, gen = np.random.default_rng(args.seed), torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    world = get_world(args.world)
    pool_x, pool_y = labelled_batch(rng, args.pool, world)
    model = ToyClassifier(heads=world.heads)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps, pct_start=0.1)
    for step in range(args.steps):
        model.train()
        idx = torch.randint(args.pool, (args.batch,), generator=gen)
        x = augment(pool_x[idx], gen)
        loss = loss_fn(model(x), {k: v[idx] for k, v in pool_y.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            log.info("step %d loss %.4f %.0fs", step, loss.item(), time.time() - t0)
    eval_rng = np.random.default_rng(args.seed + 12345)
    log.info("clean accuracy on fresh images: %s", accuracy(model, eval_rng, world=world))
    log.info("augmented accuracy on fresh images: %s", accuracy(model, eval_rng, gen=gen, world=world))
    weights = world.classifier_weights
    save_classifier(model.eval(), weights)
    log.info("saved %s (%.2f MB) in %.1f min", weights, weights.stat().st_size / 1e6, (time.time() - t0) / 60)


if __name__ == "__main__":
    main()
