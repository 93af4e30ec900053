"""Train the toy Stable-Diffusion model on CPU and save it as a diffusers pipeline folder.

    python -m toyworld.train --out toyworld/model --seed 0

Stage 1 trains the VAE; stage 2 caches latents and trains text encoder + UNet jointly.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .models import build_scheduler, build_text_encoder, build_unet, build_vae, n_params
from .save import save_pipeline, write_training_md
from .tokenizer import build_tokenizer, build_vocab
from .worlds import get_world

log = logging.getLogger("toyworld.train")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", choices=("shapes", "tags"), default="shapes",
                   help="which measuring world to train (toyworld/worlds.py)")
    p.add_argument("--out", default="toyworld/model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="1 is faster than 2 when other jobs share the 2 cores (measured 2-4x)")
    p.add_argument("--vae-steps", type=int, default=260)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-init", default=None,
                   help="folder of a trained toy VAE to fine-tune instead of starting from scratch")
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--unet-init", default=None,
                   help="trained toy pipeline folder whose UNet and text encoder are trained further "
                        "(a continuation; its tokenizer must be this script's)")
    p.add_argument("--per-spec", type=int, default=48, help="cached images per (shape,colour,bg)")
    p.add_argument("--unet-steps", type=int, default=0, help="0: fit --unet-minutes")
    p.add_argument("--unet-minutes", type=float, default=32.0)
    p.add_argument("--groups", type=int, default=8, help="captions per batch")
    p.add_argument("--group-size", type=int, default=4, help="images per caption")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--text-dropout", type=float, default=0.1)
    p.add_argument("--prediction", choices=("v_prediction", "epsilon"), default="v_prediction",
                   help="what the UNet predicts (v3 and earlier: epsilon)")
    p.add_argument("--held-out-captions", choices=("full", "partial"), default="full",
                   help="full: benchmark pairs are named like every pair (v4); partial: never named "
                        "together (v3), which left the model unable to draw them from words")
    p.add_argument("--vae-groups", type=int, default=32, help="GroupNorm groups (8 keeps colour better)")
    p.add_argument("--unet-groups", type=int, default=32)
    p.add_argument("--unet-channels", type=_widths, default=(32, 64, 128),
                   help="fresh UNet's block widths, 16x16 level first (v4: 32,64,128; v5: 48,96,112 with "
                        "--unet-groups 16); --unet-init keeps the saved model's widths")
    p.add_argument("--logvar-init", type=float, default=None,
                   help="initial VAE posterior log-variance (e.g. -4: less latent noise early)")
    p.add_argument("--snapshot-at", type=float, default=0.5, help="save an early copy at this fraction")
    args = p.parse_args(argv)
    args.world_spec = get_world(args.world)
    # Checked here, not when the UNet is built: that happens after minutes of VAE work and latent caching.
    if not args.unet_init and any(c % args.unet_groups for c in args.unet_channels):
        p.error(f"--unet-channels {','.join(map(str, args.unet_channels))}: every width must divide by "
                f"--unet-groups {args.unet_groups}; pass --unet-groups {_groups_for(args.unet_channels)}")
    return args


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers, e.g. 48,96,112") from None
    if len(widths) < 2 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least two positive widths, e.g. 48,96,112")
    return widths


def _groups_for(widths: tuple[int, ...], most: int = 32) -> int:
    """The largest GroupNorm group count (at most `most`) that divides every width."""
    common = math.gcd(*widths)
    return max(g for g in range(1, most + 1) if common % g == 0)


def load_fp32(model_class, folder):
    """A saved (fp16) toy component as fp32 training weights, from local files only."""
    return model_class.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)


def train_vae(args, rng) -> torch.nn.Module:
    if args.vae_init:
        from diffusers import AutoencoderKL
        vae = load_fp32(AutoencoderKL, args.vae_init)
    else:
        vae = build_vae(groups=args.vae_groups, image_size=args.world_spec.image_size)
    if args.logvar_init is not None and not args.vae_init:
        with torch.no_grad():  # second half of conv_out channels is the log-variance
            vae.encoder.conv_out.bias[vae.config.latent_channels:].fill_(args.logvar_init)
    log.info("VAE: %.2fM params, %d steps", n_params(vae) / 1e6, args.vae_steps)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.vae_lr, total_steps=max(1, args.vae_steps),
                                                pct_start=0.05)
    for step in range(args.vae_steps):  # 0 steps: keep --vae-init as it is
        x = args.world_spec.module("data").image_batch(rng, args.vae_batch) * 2 - 1
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        # L1 keeps flat colours and edges sharp; the tiny KL only keeps latents bounded.
        loss = (rec - x).abs().mean() + (rec - x).pow(2).mean() + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.vae_steps - 1:
            log.info("vae step %d/%d loss %.4f", step, args.vae_steps, loss.item())
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def vae_check(vae, rng, world, per_concept: int = 12) -> dict[str, float]:
    """Classifier accuracy (shape and colour) on VAE reconstructions of each held-out concept.

    The VAE bounds what the whole model can show: a concept it cannot reconstruct cannot
    be generated, whatever the text says.
    """
    from .classifier import load_classifier, predict

    if not world.classifier_weights.exists():
        log.warning("no classifier at %s yet: VAE reconstructions not judged", world.classifier_weights)
        return {}
    model = load_classifier(world.classifier_weights, heads=world.heads, world=world.name)
    backgrounds = [b for b in world.heads["background"] if b != world.new_context][:4]
    specs = [(s, c, b) for s, c in world.held_out for b in backgrounds]
    per = max(1, per_concept // len(backgrounds))
    images = world.module("data").spec_images(specs, per, rng).flatten(0, 1)
    recon = (vae.decode(vae.encode(images * 2 - 1).latent_dist.mean).sample.clamp(-1, 1) + 1) / 2
    pred = predict(recon, model, size=world.image_size)
    truth = [(s, c) for s, c, _ in specs for _ in range(per)]
    right = [(s, c) == t for s, c, t in zip(pred["shape"], pred["colour"], truth)]
    acc = {f"{c} {s}": float(np.mean([r for r, t in zip(right, truth) if t == (s, c)]))
           for s, c in world.held_out}
    log.info("VAE reconstruction, classifier shape+colour right: %s (mean %.2f)", acc, np.mean(right))
    return acc


@torch.no_grad()
def cache_latents(vae, specs, args, rng) -> torch.Tensor:
    """Encode per-spec images once (posterior mean) and set the VAE's scaling_factor."""
    images = args.world_spec.module("data").spec_images(specs, args.per_spec, rng).flatten(0, 1) * 2 - 1
    means, mse = [], []
    for chunk in images.split(256):
        mean = vae.encode(chunk).latent_dist.mean
        means.append(mean)
        if not mse:  # one chunk is enough for the log
            mse.append((vae.decode(mean).sample.clamp(-1, 1) - chunk).pow(2).mean().item())
    latents = torch.cat(means)
    scale = 1.0 / latents.std().item()
    vae.register_to_config(scaling_factor=scale)
    log.info("latents %s std %.3f -> scaling_factor %.4f; recon mse %.5f",
             tuple(latents.shape), 1 / scale, scale, float(np.mean(mse)))
    return (latents * scale).view(len(specs), args.per_spec, *latents.shape[1:])


def sample_batch(latents, specs, tokenizer, args, rng):
    """groups x group_size latents; each group shares one caption (one text-encoder pass)."""
    idx = rng.integers(len(specs), size=args.groups)
    captions = []
    for i in idx:
        drop = rng.random() < args.text_dropout  # empty prompt: classifier-free guidance
        if drop:
            captions.append("")
        else:
            captions.append(args.world_spec.module("data").training_caption(specs[i], rng, args.held_out_captions))
    pick = rng.integers(latents.shape[1], size=(args.groups, args.group_size))
    x0 = latents[torch.as_tensor(idx)[:, None], torch.as_tensor(pick)].flatten(0, 1)
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return x0, ids, captions


class Ema:
    """Exponential moving average of parameters; the EMA weights are what gets saved."""

    def __init__(self, modules, decay=0.998):
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p, 1 - d)

    @torch.no_grad()
    def swap(self):
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def diffusion_loss(unet, text_encoder, scheduler, x0, ids, args):
    hidden = text_encoder(ids)[0].repeat_interleave(args.group_size, dim=0)
    noise = torch.randn_like(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],))
    xt = scheduler.add_noise(x0, noise, t)
    pred = unet(xt, t, hidden).sample
    acp = scheduler.alphas_cumprod[t]
    snr = acp / (1 - acp)
    if scheduler.config.prediction_type == "v_prediction":
        # v-MSE weighs the x0 error by SNR + 1: at high noise, where the prompt must decide colours and
        # layout, it is learned at full weight. Capped at 6 (min-SNR-5) so easy low-noise steps do not dominate.
        target, w = scheduler.get_velocity(x0, noise, t), torch.clamp(snr + 1, max=6.0) / (snr + 1)
    else:  # epsilon, min-SNR-5: weighs the x0 error by min(SNR, 5), i.e. almost nothing at high noise (v3)
        target, w = noise, torch.clamp(snr, max=5.0) / snr
    return (w * (pred - target).pow(2).mean(dim=(1, 2, 3))).mean()


def lr_factor(step, total, warmup=100):
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def diffusion_models(tokenizer, args):
    """Fresh UNet + text encoder, or (``--unet-init``) the fp32 copies of a trained pipeline's."""
    if args.unet_init:
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel
        folder = Path(args.unet_init)
        text_encoder = load_fp32(CLIPTextModel, folder / "text_encoder")
        if text_encoder.config.vocab_size != len(tokenizer):
            raise SystemExit(f"--unet-init {folder}: its text encoder has {text_encoder.config.vocab_size} "
                             f"tokens, this tokenizer {len(tokenizer)}; continue only a model trained "
                             "with the same toyworld/tokenizer.py")
        # Continuing under another target would silently retrain the UNet's output head.
        trained_for = DDPMScheduler.load_config(folder / "scheduler")["prediction_type"]
        if trained_for != args.prediction:
            raise SystemExit(f"--unet-init {folder} predicts {trained_for}; pass --prediction {trained_for}")
        return load_fp32(UNet2DConditionModel, folder / "unet").train(), text_encoder.train()
    world = args.world_spec
    text_encoder = build_text_encoder(len(tokenizer), tokenizer.bos_token_id,
                                      tokenizer.eos_token_id, tokenizer.pad_token_id,
                                      layers=2, intermediate=256, width=world.text_width,
                                      max_length=world.max_length)
    unet = build_unet(args.unet_channels, groups=args.unet_groups, latent_size=world.image_size // 4,
                      text_width=world.text_width)
    return unet, text_encoder


def train_diffusion(vae, tokenizer, latents, specs, args, rng, on_snapshot):
    unet, text_encoder = diffusion_models(tokenizer, args)
    scheduler = build_scheduler(args.prediction)
    log.info("text encoder %.2fM, unet %.2fM params", n_params(text_encoder) / 1e6, n_params(unet) / 1e6)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ema = Ema([unet, text_encoder])
    total, budget = args.unet_steps or 10**9, args.unet_minutes * 60
    t0, step, snap_done, running = time.time(), 0, False, None
    while step < total:
        x0, ids, _ = sample_batch(latents, specs, tokenizer, args, rng)
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(step, total if total < 10**9 else 3000)
        loss = diffusion_loss(unet, text_encoder, scheduler, x0, ids, args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if not args.unet_steps and (step == 30 or step % 200 == 0):
            # Measured throughput -> steps that fit the budget; re-measured as the run goes,
            # because other jobs on a shared 2-core machine change the speed by 2x or more.
            per_step = (time.time() - t0) / step
            total = max(step + 1, int(budget / per_step))
            if step == 30:
                log.info("%.3f s/step -> %d steps in %.0f min", per_step, total, args.unet_minutes)
        if step % 50 == 0 or step == total:
            log.info("unet step %d/%d loss %.4f (avg %.4f) %.0fs", step, total, loss.item(), running,
                     time.time() - t0)
        if not snap_done and step >= args.snapshot_at * total and total < 10**9:
            snap_done = True
            ema.swap(); on_snapshot(unet, text_encoder, step); ema.swap()
    ema.swap()
    return unet.eval(), text_encoder.eval(), scheduler, step, running


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    t_start = time.time()
    world = args.world_spec
    tokenizer = build_tokenizer(build_vocab(list(world.caption_words)), world.max_length)
    vae = train_vae(args, rng)
    t_vae = time.time() - t_start
    specs = world.module("data").training_specs()
    recon_acc = vae_check(vae, np.random.default_rng(args.seed + 1), world)
    latents = cache_latents(vae, specs, args, rng)

    def snapshot(unet, text_encoder, step):
        save_pipeline(out, vae, text_encoder, tokenizer, unet, build_scheduler(args.prediction))
        log.info("snapshot saved at step %d", step)

    unet, text_encoder, scheduler, steps, final_loss = train_diffusion(
        vae, tokenizer, latents, specs, args, rng, snapshot)
    wall = time.time() - t_start
    sizes = save_pipeline(out, vae, text_encoder, tokenizer, unet, scheduler)
    info = dict(command="python -m toyworld.train " + " ".join(argv if argv is not None else sys.argv[1:]),
                seed=args.seed, vae_steps=args.vae_steps, unet_steps=steps,
                wall_minutes=round(wall / 60, 1), vae_minutes=round(t_vae / 60, 1),
                final_loss=round(final_loss, 4), sizes_mb=sizes, threads=args.threads,
                batch=args.groups * args.group_size, specs=len(specs), per_spec=args.per_spec,
                vae_init=args.vae_init, unet_init=args.unet_init, lr=args.lr, vae_recon_accuracy=recon_acc,
                held_out_captions=args.held_out_captions, prediction=args.prediction,
                unet_channels=list(args.unet_channels), unet_groups=args.unet_groups,
                max_length=tokenizer.model_max_length, world=world.name, text_width=world.text_width,
                image_size=world.image_size)
    (out / "training_info.json").write_text(json.dumps(info, indent=2))
    write_training_md(out, info)
    log.info("done: %s", info)


if __name__ == "__main__":
    main()
