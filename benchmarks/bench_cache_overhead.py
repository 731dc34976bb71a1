"""Time caching every hook of the hooked vision tower against a plain forward pass.

Usage:
    .venv/bin/python benchmarks/bench_cache_overhead.py [--batch 256 --rounds 30 --threads 2 1]

The model is the embedded ``shapes-clip`` as a vit-prisma ``HookedViT``
(:func:`helpers.hooked_vision.hooked_vision_tower`), on a batch of ShapesWorld
images, under ``torch.no_grad``. Every round runs each configuration once, in
a shuffled order, so load from other processes on a shared machine hits all
configurations alike. The report gives per-configuration medians and the
median over rounds of the per-round ratio to the plain forward pass.

Configurations:

* ``plain``: ``hooked(pixels)``, no hooks;
* ``hf_get_image_features``: the Hugging Face model, for reference;
* ``noop_hooks_all``: a hook that does nothing on every hook point, which
  isolates the cost of calling Python hooks;
* ``cache_all``: ``run_with_cache`` on every hook point;
* ``cache_patterns`` and ``cache_residuals``: the ``names_filter`` caches that
  notebook 01 uses;
* ``group:<suffix>``: caching one kind of hook (for example
  ``attn.hook_pattern`` in every layer), to show which hooks cost most.

Each thread count (``--threads``; by default PyTorch's default, then 1) is
one run. Results go to ``benchmarks/results/cache_overhead.json``, and the
target is a ``cache_all`` ratio of at most 1.2.

``hooked_vision_tower`` sets glibc to keep freed memory for reuse
(:func:`helpers.memory.retain_freed_memory`), so the runs above measure the
tower as the notebooks use it. The allocator check repeats ``plain`` against
``cache_all`` on one thread in fresh processes, alternating between that
setting and glibc's defaults (``tune_allocator=False``). With the defaults,
the activations a full cache keeps alive are returned to the kernel when the
cache is dropped, and the next pass maps and zeroes fresh pages. The
difference between the two shows what the setting saves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from helpers import encoding, load_clip, shapes  # noqa: E402
from helpers.hooked_vision import hooked_vision_tower  # noqa: E402
from helpers.memory import retain_freed_memory  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "cache_overhead.json"
RATIO_GOAL = 1.2


def _suffix(name: str) -> str:
    """Return the hook name without its ``blocks.{layer}.`` prefix."""
    parts = name.split(".")
    return ".".join(parts[2:]) if parts[0] == "blocks" else name


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def build_configurations(hooked, loaded, pixels) -> dict[str, callable]:
    hook_names = list(hooked.hook_dict)
    n_layers = hooked.cfg.n_layers
    patterns = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    residuals = ["blocks.0.hook_resid_pre", *(f"blocks.{layer}.hook_resid_post" for layer in range(n_layers))]
    noop = [(name, lambda activation, hook: None) for name in hook_names]

    configurations = {
        "plain": lambda: hooked(pixels),
        "hf_get_image_features": lambda: loaded.model.get_image_features(pixel_values=pixels),
        "noop_hooks_all": lambda: hooked.run_with_hooks(pixels, fwd_hooks=noop),
        "cache_all": lambda: hooked.run_with_cache(pixels),
        "cache_patterns": lambda: hooked.run_with_cache(pixels, names_filter=patterns),
        "cache_residuals": lambda: hooked.run_with_cache(pixels, names_filter=residuals),
    }
    for suffix in dict.fromkeys(_suffix(name) for name in hook_names):
        group = [name for name in hook_names if _suffix(name) == suffix]
        configurations[f"group:{suffix}"] = lambda group=group: hooked.run_with_cache(pixels, names_filter=group)
    return configurations


def cached_megabytes(hooked, pixels) -> dict[str, float]:
    """Return the size of every cached activation, summed per hook suffix, in MB."""
    with torch.no_grad():
        _, cache = hooked.run_with_cache(pixels)
    sizes: dict[str, float] = {}
    for name, tensor in cache.items():
        sizes[_suffix(name)] = sizes.get(_suffix(name), 0.0) + tensor.numel() * tensor.element_size() / 1e6
    return sizes


def time_rounds(configurations: dict, rounds: int, warmup: int, seed: int) -> dict[str, list[float]]:
    """Run every configuration once per round, in a shuffled order; return seconds per round."""
    times = {name: [] for name in configurations}
    order = list(configurations)
    rng = random.Random(seed)
    with torch.no_grad():
        for _ in range(warmup):
            for function in configurations.values():
                function()
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                start = time.perf_counter()
                configurations[name]()
                times[name].append(time.perf_counter() - start)
    return times


def minor_page_faults(configurations: dict, names: list[str], repeats: int = 5) -> dict[str, int]:
    """Return the median number of minor page faults of one call of each named configuration.

    A minor fault is the kernel mapping a fresh page of memory. Activations
    that a cache keeps alive stop the allocator from reusing freed buffers,
    so the next ones land on fresh pages.
    """
    faults = {}
    with torch.no_grad():
        for name in names:
            counts = []
            for _ in range(repeats):
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                configurations[name]()
                counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            faults[name] = int(statistics.median(counts))
    return faults


def summarise(times: dict[str, list[float]], sizes: dict[str, float]) -> dict:
    plain = times["plain"]
    rows = {}
    for name, seconds in times.items():
        ratios = [t / p for t, p in zip(seconds, plain)]
        row = {
            "median_ms": round(statistics.median(seconds) * 1e3, 3),
            "min_ms": round(min(seconds) * 1e3, 3),
            "median_ratio_to_plain": round(statistics.median(ratios), 3),
        }
        if name.startswith("group:"):
            row["cached_mb"] = round(sizes.get(name.removeprefix("group:"), 0.0), 2)
        rows[name] = row
    return rows


def measure(hooked, loaded, pixels, sizes: dict[str, float], threads: int, args: argparse.Namespace) -> dict:
    """Time every configuration with ``threads`` PyTorch threads and return one run of the report."""
    torch.set_num_threads(threads)
    load_before = _loadavg()
    configurations = build_configurations(hooked, loaded, pixels)
    times = time_rounds(configurations, args.rounds, args.warmup, args.seed)
    load_after = _loadavg()
    rows = summarise(times, sizes)
    faults = minor_page_faults(configurations, ["plain", "noop_hooks_all", "cache_all", "cache_patterns", "cache_residuals"])
    for name, count in faults.items():
        rows[name]["minor_page_faults_per_call"] = count
    ratio = rows["cache_all"]["median_ratio_to_plain"]
    return {
        "torch_threads": threads,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "goal": {"cache_all_ratio_at_most": RATIO_GOAL, "cache_all_ratio": ratio, "met": ratio <= RATIO_GOAL},
        "configurations": rows,
    }


def allocator_worker(args: argparse.Namespace) -> None:
    """Time ``plain`` and ``cache_all`` on one thread in this process and print one JSON line."""
    torch.set_num_threads(1)
    loaded = load_clip("shapes-clip")
    hooked = hooked_vision_tower(loaded, tune_allocator=not args.glibc_defaults)
    pixels = encoding.pixel_values(loaded, shapes.generate(args.batch, seed=args.seed, split="heldout").images)
    configurations = {"plain": lambda: hooked(pixels), "cache_all": lambda: hooked.run_with_cache(pixels)}
    times = time_rounds(configurations, args.rounds, args.warmup, args.seed)
    faults = minor_page_faults(configurations, list(configurations))
    ratios = [cached / plain for cached, plain in zip(times["cache_all"], times["plain"])]
    print(json.dumps({
        "plain_median_ms": round(statistics.median(times["plain"]) * 1e3, 3),
        "cache_all_median_ms": round(statistics.median(times["cache_all"]) * 1e3, 3),
        "median_ratio": round(statistics.median(ratios), 3),
        "minor_page_faults_per_call": faults,
    }))


def allocator_check(args: argparse.Namespace, repeats: int = 3) -> dict:
    """Run :func:`allocator_worker` ``repeats`` times with each allocator setting, alternating, in fresh processes."""
    settings = {"glibc_defaults": ["--glibc-defaults"], "retain_freed_memory": []}
    results: dict[str, list[dict]] = {name: [] for name in settings}
    command = [
        sys.executable, str(Path(__file__).resolve()), "--allocator-worker",
        "--batch", str(args.batch), "--rounds", str(args.rounds), "--warmup", str(args.warmup), "--seed", str(args.seed),
    ]
    for _ in range(repeats):
        for name, extra in settings.items():
            completed = subprocess.run([*command, *extra], capture_output=True, text=True, check=True)
            results[name].append(json.loads(completed.stdout.strip().splitlines()[-1]))
    return {
        "torch_threads": 1,
        "worker_arguments": settings,
        "median_ratio": {name: statistics.median(r["median_ratio"] for r in runs) for name, runs in results.items()},
        "processes": results,
    }


def print_run(run: dict, args: argparse.Namespace) -> None:
    print(
        f"\nbatch {args.batch}, {args.rounds} rounds, {run['torch_threads']} PyTorch threads, "
        f"load average {run['loadavg_before']} -> {run['loadavg_after']}"
    )
    for name, row in sorted(run["configurations"].items(), key=lambda item: -item[1]["median_ms"]):
        extra = f"  {row['cached_mb']:7.2f} MB" if "cached_mb" in row else ""
        if "minor_page_faults_per_call" in row:
            extra += f"  {row['minor_page_faults_per_call']} minor page faults per call"
        print(f"{name:36s} {row['median_ms']:8.2f} ms  x{row['median_ratio_to_plain']:.3f}{extra}")
    ratio = run["goal"]["cache_all_ratio"]
    print(f"cache_all / plain = {ratio:.3f} (goal <= {RATIO_GOAL}): {'met' if ratio <= RATIO_GOAL else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="images per forward pass")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds; each runs every configuration once")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds before timing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and of the run order")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None,
        help="PyTorch thread counts to measure, one run each (default: PyTorch's default, then 1)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="path of the JSON report")
    parser.add_argument("--skip-allocator-check", action="store_true", help="leave out the malloc comparison")
    parser.add_argument("--allocator-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--glibc-defaults", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allocator_worker:
        allocator_worker(args)
        return 0
    default_threads = torch.get_num_threads()
    thread_counts = args.threads or list(dict.fromkeys([default_threads, 1]))

    loaded = load_clip("shapes-clip")
    hooked = hooked_vision_tower(loaded)
    allocator_settings = retain_freed_memory()
    data = shapes.generate(args.batch, seed=args.seed, split="heldout")
    pixels = encoding.pixel_values(loaded, data.images)
    sizes = cached_megabytes(hooked, pixels)

    runs = []
    for threads in thread_counts:
        runs.append(measure(hooked, loaded, pixels, sizes, threads, args))
        print_run(runs[-1], args)

    allocator = None if args.skip_allocator_check else allocator_check(args)
    if allocator is not None:
        print("\ncache_all / plain on one thread, median over processes: " + ", ".join(
            f"{name} {ratio:.3f}" for name, ratio in allocator["median_ratio"].items()))

    report = {
        "benchmark": "cache overhead of the hooked vision tower",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": "shapes-clip",
        "batch": args.batch,
        "rounds": args.rounds,
        "hook_points": len(hooked.hook_dict),
        "cached_mb_all_hooks": round(sum(sizes.values()), 1),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "default_torch_threads": default_threads,
            "torch": torch.__version__,
        },
        "allocator": {
            "retain_freed_memory": allocator_settings.applied,
            "threshold_bytes": allocator_settings.threshold_bytes,
        },
        "runs": runs,
        "allocator_check": allocator,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(args.output)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
