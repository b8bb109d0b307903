"""The compiled gallery `transformer` trained on several processes: DDP or FSDP2 (`fully_shard`
per block, then the whole model), one process per GPU, against one process training on the same
global batch.

    torchrun --nproc_per_node 2 bench/distributed.py --impl ddp|fsdp2 [--reference single.json]
    python3 bench/distributed.py --impl single --out single.json
    torchrun --nproc_per_node 2 bench/distributed.py --impl ddp --backend gloo --device cpu --dry

One process under torchrun (`--nproc_per_node 1`, the one-GPU machine) runs the wrapped model
over the backend with nothing to share: the NCCL path, the FSDP2 gathering and the wrapper's
cost against the plain single run.

Full size: 12 blocks, D = 1024 (H = 16, K = V = 64), F = 4096, T = 2048, W = 32768, bfloat16
parameters, AdamW; synthetic tokens (arithmetic sequences modulo W, so the loss falls). Each
step's global batch is drawn from a generator seeded by the step and split between the ranks.
`--dry`: 2 blocks, D = 64, T = 32, 4 steps, float32 on the CPU.

Checks (exit 1 if one fails): the losses of every step match the single-process run's (from
`--reference`, or run by rank 0 after the distributed run) within `--loss-rtol`; the trained
weights, gathered as a full state dict, load into the standalone file `ncd.compiler.to_source`
writes, and its output matches the trained model's within `--out-rtol`.

Rows: {"op": "train_transformer", "impl": "ddp" | "fsdp2" | "single", "gpus", "tok_s",
"peak_mib" (largest over ranks; null on the CPU), ...}; the distributed row adds the reference's
`single_tok_s`, `speedup` and `scaling` (speedup / gpus). NVLink multicast is kept off: the
script sets NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1
itself, before torch starts.
"""

from __future__ import annotations

import os

os.environ["NCCL_NVLS_ENABLE"] = "0"
os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1"
os.environ["NVSHMEM_DISABLE_NVLS"] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiler_common import meta  # noqa: E402

from ncd import gallery  # noqa: E402
from ncd.compiler import compile as ncd_compile  # noqa: E402
from ncd.compiler import to_source  # noqa: E402
from ncd.compiler.names import class_name  # noqa: E402

FULL = {"N": 12, "H": 16, "K": 64, "V": 64, "F": 4096, "T": 2048, "W": 32768}
DRY = {"N": 2, "H": 4, "K": 16, "V": 16, "F": 256, "T": 32, "W": 128}
MULTICAST_OFF = ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS")


def batch(step: int, size: int, T: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Global batch of `step`: tokens [B T] and next-token targets [B T], arithmetic sequences
    x_t = (x_0 + t s) mod W with x_0, s drawn per sequence."""
    gen = torch.Generator().manual_seed(1000 + step)
    x0 = torch.randint(0, W, (size, 1), generator=gen)
    s = torch.randint(1, W, (size, 1), generator=gen)
    seq = (x0 + s * torch.arange(T + 1)) % W
    return seq[:, :-1], seq[:, 1:]


def build(sizes: dict, local_batch: int, dtype, device: str, seed: int):
    torch.manual_seed(seed)  # the same initial weights in every process
    circuit = gallery.get("transformer")
    model = ncd_compile(circuit, sizes={**sizes, "B": local_batch}, dtype=dtype, device=device)
    return circuit, model


def wrap(model, impl: str, world: int, device: str):
    if impl == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device, (world,))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def full_state(model, impl: str) -> dict:
    """The whole model's state dict under the compiled module's names (every rank calls it)."""
    if impl == "single":
        return model.state_dict()
    if impl == "ddp":
        return model.module.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts)


def train(model, args, sizes, rank: int, world: int, device: str) -> dict:
    """`args.steps` AdamW steps on this rank's share of each global batch; the mean loss over
    the global batch per step, tokens/s over the steps after the warm-up, peak memory."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    local = args.batch // world
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    warm = min(args.warmup, args.steps - 1)
    losses = []
    start = None
    for step in range(args.steps):
        if step == warm:
            sync()
            if world > 1:
                dist.barrier()
            start = time.perf_counter()
        tokens, target = batch(step, args.batch, sizes["T"], sizes["W"])
        tokens = tokens[rank * local : (rank + 1) * local].to(device)
        target = target[rank * local : (rank + 1) * local].to(device)
        opt.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    sync()
    seconds = time.perf_counter() - start
    losses = torch.stack(losses).float()
    peak = torch.tensor([torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0])
    if world > 1:
        losses = losses.to(device)
        dist.all_reduce(losses)  # every rank's share is the same size: the sum / world is the mean
        losses /= world
        peak = peak.to(device)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    timed = args.steps - warm
    return {
        "losses": losses.cpu().tolist(),
        "tok_s": timed * args.batch * sizes["T"] / seconds,
        "peak_mib": round(peak.item(), 1) if cuda else None,
        "timed_steps": timed,
    }


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    err = ((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp_min(1e-12)).item()
    return err if err == err else math.inf  # NaN would pass every `<`


def standalone_check(circuit, sizes, local, state, model, dtype, device) -> float:
    """Load `state` into the file `to_source` writes for the circuit; the relative RMS
    difference of its output from `model`'s on one batch (every rank runs `model`)."""
    tokens, _ = batch(-1, local, sizes["T"], sizes["W"])
    tokens = tokens.to(device)
    with torch.no_grad():
        want = model(tokens)
    if state is None:  # not rank 0
        return math.nan
    text = to_source(circuit, {**sizes, "B": local}, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "standalone.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location("ncd_standalone", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    alone = getattr(mod, class_name(circuit.name))()
    alone.load_state_dict(state, strict=True)
    alone = alone.to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        got = alone(tokens)
    return rel_rms(got, want)


def compare_losses(got: list[float], ref: list[float]) -> float:
    return max(abs(g - r) / abs(r) for g, r in zip(got, ref, strict=True))


def row(impl: str, gpus: int, result: dict, args, sizes, dtype) -> dict:
    return {
        "op": "train_transformer",
        "impl": impl,
        "gpus": gpus,  # processes, one per GPU; on the CPU (--dry) the same count
        "device": args.device,
        "tok_s": round(result["tok_s"], 1),
        "peak_mib": result["peak_mib"],
        "global_batch": args.batch,
        "steps": args.steps,
        "timed_steps": result["timed_steps"],
        "dtype": str(dtype).removeprefix("torch."),
        "sizes": sizes,
        "loss_first": result["losses"][0],
        "loss_last": result["losses"][-1],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", choices=["ddp", "fsdp2", "single"], required=True)
    p.add_argument("--backend", choices=["nccl", "gloo"], default="nccl")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--dry", action="store_true", help="tiny sizes, float32 on the CPU")
    p.add_argument("--steps", type=int, default=None, help="default 200 (4 with --dry)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps; default 10 (1 dry)")
    p.add_argument("--batch", type=int, default=8, help="global batch (sequences per step)")
    p.add_argument("--lr", type=float, default=None, help="default 3e-4 (1e-2 with --dry)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", default=None, help="JSON of an --impl single run to compare")
    p.add_argument("--loss-rtol", type=float, default=None, help="default 2e-2 bf16, 1e-4 f32")
    p.add_argument("--out-rtol", type=float, default=None, help="default 2e-2 bf16, 1e-5 f32")
    p.add_argument("--out", default=None, help="JSON file for the results")
    args = p.parse_args()
    if args.dry:
        args.device, args.backend = "cpu", "gloo" if args.backend == "nccl" else args.backend
    sizes = DRY if args.dry else FULL
    dtype = torch.float32 if args.dry or args.device == "cpu" else torch.bfloat16
    args.steps = args.steps or (4 if args.dry else 200)
    args.lr = args.lr or (1e-2 if args.dry else 3e-4)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.dry else 10)
    loss_rtol = args.loss_rtol or (1e-4 if dtype == torch.float32 else 2e-2)
    out_rtol = args.out_rtol or (1e-5 if dtype == torch.float32 else 2e-2)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.impl == "single" and world != 1:
        raise SystemExit(f"--impl single runs in one process; WORLD_SIZE is {world}")
    if args.impl != "single" and "WORLD_SIZE" not in os.environ:
        raise SystemExit(f"--impl {args.impl}: launch with torchrun --nproc_per_node N")
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} does not split over {world} processes")
    if args.device == "cuda":
        torch.cuda.set_device(local_rank)
    if args.impl != "single":  # one process too: the wrapped model over the backend
        dev = torch.device("cuda", local_rank) if args.device == "cuda" else None
        dist.init_process_group(args.backend, device_id=dev)
    say = print if rank == 0 else (lambda *a, **k: None)
    say(
        f"{args.impl}: {world} process(es), {'-' if args.impl == 'single' else args.backend}, "
        f"{args.device}, {str(dtype).removeprefix('torch.')}, sizes {sizes}, global batch "
        f"{args.batch}, {args.steps} steps; "
        + ", ".join(f"{k}={os.environ[k]}" for k in MULTICAST_OFF),
        flush=True,
    )

    reference = None
    if args.reference:  # read and checked before training, by every rank
        ref_json = json.loads(Path(args.reference).read_text())
        reference = (ref_json["losses"], ref_json["rows"][0]["tok_s"])
        ref_batch = ref_json["rows"][0]["global_batch"]
        if len(reference[0]) != args.steps or ref_batch != args.batch:
            raise SystemExit(
                f"{args.reference}: {len(reference[0])} steps at global batch {ref_batch}; "
                f"this run: {args.steps} steps at global batch {args.batch}"
            )
    local = args.batch // world
    circuit, model = build(sizes, local, dtype, args.device, args.seed)
    if args.impl != "single":
        model = wrap(model, args.impl, world, args.device)
    result = train(model, args, sizes, rank, world, args.device)
    state = full_state(model, args.impl)  # every rank takes part in the gathering
    alone_err = standalone_check(
        circuit, sizes, local, state if rank == 0 else None, model, dtype, args.device
    )
    failed = []
    rows = [row(args.impl, world, result, args, sizes, dtype)]
    r = rows[0]
    r["standalone_rel_rms"] = alone_err
    if rank == 0 and not alone_err <= out_rtol:
        failed.append(f"standalone file's output off by {alone_err:.2e} (bound {out_rtol:g})")
    say(f"losses {[round(v, 5) for v in result['losses']]}")
    say(
        f"tok/s {result['tok_s']:.1f}, peak MiB {result['peak_mib']}, standalone file "
        f"loaded the {'gathered ' if args.impl == 'fsdp2' else ''}state dict: output rel RMS "
        f"{alone_err:.2e}",
        flush=True,
    )

    if args.impl != "single":
        if world > 1:
            dist.barrier()
        if rank == 0:
            if reference is None:  # one process on the whole global batch, here
                _, single = build(sizes, args.batch, dtype, args.device, args.seed)
                ref = train(single, args, sizes, 0, 1, args.device)
                reference = (ref["losses"], ref["tok_s"])
                rows.append(row("single", 1, ref, args, sizes, dtype))
            worst = compare_losses(result["losses"], reference[0])
            r["loss_max_rel_diff"] = worst
            r["single_tok_s"] = round(reference[1], 1)
            r["speedup"] = round(result["tok_s"] / reference[1], 3)
            r["scaling"] = round(r["speedup"] / world, 3)
            say(f"reference losses {[round(v, 5) for v in reference[0]]}")
            say(
                f"loss match: largest relative difference {worst:.2e} (bound {loss_rtol:g}); "
                f"single-process tok/s {reference[1]:.1f}: speedup {r['speedup']}, scaling "
                f"{r['scaling']}",
                flush=True,
            )
            if not worst <= loss_rtol:
                failed.append(f"losses differ by {worst:.2e} (bound {loss_rtol:g})")
        if world > 1:
            dist.barrier()

    if rank == 0:
        if args.out:
            result_json = {
                "meta": {
                    **meta(args.device),
                    "world": world,
                    "backend": args.backend,
                    **{k: os.environ[k] for k in MULTICAST_OFF},
                },
                "rows": rows,
                "losses": result["losses"],
            }
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result_json, indent=2) + "\n")
            say(f"wrote {args.out}")
        for f in failed:
            print(f"FAIL {args.impl}: {f}", file=sys.stderr)
        say("ok" if not failed else "FAILED", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if dist.is_initialized():
        # Both ranks leave together, without running C++ destructors: tearing gloo down aborts a
        # rank now and then on a small CPU machine (see tests/compiler/test_distributed.py).
        dist.barrier()
        os._exit(code)
    sys.exit(code)
