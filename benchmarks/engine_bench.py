"""Engine benchmark: ES fitness throughput vs raw UNet throughput, batched vs serial candidate evaluation,
and peak memory of one ES generation vs one gradient-TI step — measured side by side in one run.

    python benchmarks/engine_bench.py --model toy            # CPU, the shipped toy model (default)
    python benchmarks/engine_bench.py --model tiny           # CPU, a tiny random SD1 pipeline
    python benchmarks/engine_bench.py --gpu                  # GPU: SD1.5-sized UNet + text encoder, fp16, 512 px

Memory is measured in a fresh subprocess per measurement: CPU = peak RSS growth (ru_maxrss) over the
process's RSS after loading the model; GPU = torch.cuda.max_memory_allocated growth.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gfti_core.backends.diffusers_backend import DiffusersBackend  # noqa: E402
from gfti_core.config import InversionConfig  # noqa: E402
from gfti_core.engine import run_generations, start_run  # noqa: E402
from gfti_core.objective import Evaluator, TrainingSet, draw_samples, generation_generator  # noqa: E402
from gradient_ti import gradient_ti  # noqa: E402


def sd15_pipeline(device: str):
    """SD1.5-sized UNet + CLIP-L-sized text encoder from their configs, random weights, fp16."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from gfti_core.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok.get_vocab()), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                           beta_end=0.012),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe.to(device, torch.float16), 512


def load(model: str, gpu: bool):
    if gpu:
        return sd15_pipeline("cuda")
    if model == "tiny":
        from gfti_core.tiny import tiny_pipeline

        return tiny_pipeline("sd1"), 16
    from gfti_core.loading import load_pipeline

    pipe, _, _ = load_pipeline(model)
    return pipe, pipe.unet.config.sample_size * pipe.vae_scale_factor


def setup(args):
    torch.manual_seed(0)
    pipe, res = load(args.model, args.gpu)
    backend = DiffusersBackend(pipe, rows_per_call=args.batch)
    images = torch.rand(4, 3, res, res, device="cpu")
    width = backend.encoders[0].width
    cfg = InversionConfig(init_mode="word", init_text="sks", subspace_dim=min(64, width), popsize=args.popsize,
                          samples_per_candidate=args.samples, batch_rows=args.batch,
                          num_vectors=args.num_vectors)
    return pipe, backend, start_run(backend, cfg, images)


def sync(gpu):
    if gpu:
        torch.cuda.synchronize()


def time_it(fn, gpu, repeat):
    fn()
    sync(gpu)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(gpu)
    return (time.perf_counter() - start) / repeat


@torch.no_grad()
def raw_unet_rows_per_s(pipe, backend, state, args):
    lat = state.data.latents[:1].repeat(args.batch, 1, 1, 1).to(backend.device, backend.dtype)
    cond = backend.encode_text(["a photo of <*>"] * args.batch, {"clip_l": state.subspace.origin["clip_l"][None].expand(args.batch, -1, -1)})["hidden"]
    t = torch.randint(0, 1000, (args.batch,), device=backend.device)
    rows = args.batch
    return rows / time_it(lambda: pipe.unet(lat, t, encoder_hidden_states=cond.to(backend.dtype)).sample, args.gpu,
                          args.repeat)


def es_rows_per_s(backend, state, args):
    rows = args.popsize * args.samples
    holder = {"s": state}

    def one():
        holder["s"] = run_generations(holder["s"], backend, 1)

    return rows / time_it(one, args.gpu, args.repeat)


def serial_vs_batched(backend, state, args):
    """Population evaluation with one candidate-sample row per call vs rows_per_call = batch."""
    data: TrainingSet = state.data
    draw = draw_samples(data, args.samples, (0, 999), generation_generator(0, 0))
    cands = state.subspace.decode(torch.randn(args.popsize, state.subspace.dim) * 0.1)
    batched = Evaluator(backend, data, args.batch)
    serial = Evaluator(backend, data, 1)
    tb = time_it(lambda: batched.population_loss(cands, draw), args.gpu, 1)
    ts = time_it(lambda: serial.population_loss(cands, draw), args.gpu, 1)
    return ts / tb


def peak_memory(kind: str, args) -> float:
    """Run one measurement in a fresh process; returns MiB of peak growth over the loaded-model baseline."""
    cmd = [sys.executable, __file__, "--measure", kind, "--model", args.model, "--batch", str(args.batch),
           "--popsize", str(args.popsize), "--samples", str(args.samples), "--num-vectors", str(args.num_vectors)]
    cmd += ["--gpu"] if args.gpu else []
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["mib"]


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak-RSS high-water mark (VmHWM) to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def measure(kind: str, args) -> None:
    pipe, backend, state = setup(args)
    pipe.unet.requires_grad_(False), pipe.text_encoder.requires_grad_(False), pipe.vae.requires_grad_(False)
    if args.gpu:
        torch.cuda.synchronize(), torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.max_memory_allocated()
    else:
        _reset_peak_rss()
        base = _status_mib("VmRSS")
    if kind == "es":
        run_generations(state, backend, 1)
    else:
        gradient_ti_step(backend, state, args.batch)
    if args.gpu:
        torch.cuda.synchronize()
        mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        mib = _status_mib("VmHWM") - base
    print(json.dumps({"kind": kind, "mib": mib}))


def gradient_ti_step(backend, state, batch):
    """One step of the benchmark's gradient textual inversion (autograd through UNet and text encoder to the
    placeholder's row, AdamW update) at the same batch as one ES forward call, on the same training set."""
    gradient_ti(backend, state.data, state.subspace.origin["clip_l"], steps=1, batch=batch,
                t_range=(state.config.timestep_min, state.config.timestep_max))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="toy")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--popsize", type=int, default=16)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--num-vectors", type=int, default=1, help="vectors of the token (ES generation and gradient-TI step)")
    p.add_argument("--measure", choices=("es", "grad"))
    args = p.parse_args()
    torch.set_num_threads(2 if not args.gpu else torch.get_num_threads())
    if args.measure:
        return measure(args.measure, args)
    pipe, backend, state = setup(args)
    raw = raw_unet_rows_per_s(pipe, backend, state, args)
    es = es_rows_per_s(backend, state, args)
    speedup = serial_vs_batched(backend, state, args)
    mem_es, mem_grad = peak_memory("es", args), peak_memory("grad", args)
    result = {"model": "sd15-sized (random, fp16, 512px)" if args.gpu else args.model, "batch": args.batch,
              "raw_unet_rows_per_s": round(raw, 2), "es_rows_per_s": round(es, 2),
              "es_overhead": round(1 - es / raw, 4), "batched_vs_serial_speedup": round(speedup, 2),
              "peak_mib_es_generation": round(mem_es, 1), "peak_mib_gradient_ti_step": round(mem_grad, 1),
              "memory_ratio_es_over_grad": round(mem_es / mem_grad, 3) if mem_grad > 0 else None}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
