"""Time helpers.metrics against dense O(n^2) references and measure peak memory.

Usage:
    .venv/bin/python benchmarks/bench_metrics.py [--n 10000 --d 512 --k 10]

Each measurement runs in its own subprocess, so one metric's allocations cannot hide
another's. Memory is the growth of the worker's resident set size (RSS) during the
call: the kernel's RSS high-water mark (VmHWM) is reset through /proc/self/clear_refs
just before the call and read just after it, and the RSS at the reset is subtracted.
It counts every page that the call touched (torch tensors, BLAS buffers, Python
objects, library code loaded on first use), not only torch tensors. Inputs are built
before the reset and so are not counted. A call on 64 samples first loads the library
code that the metric uses, and only the first full-size call is measured, because later
calls can reuse heap pages that it left resident. Where /proc/self/clear_refs is not writable the worker falls back to the
lifetime peak and sets peak_is_per_call to false in the JSON report.

The references build the n x n kernels, neighbour masks and rankings in float32, the
way ``AlignmentMetrics`` in github.com/minyoungg/platonic-rep (``metrics.py``) does. The
CKA and CKNNA references divide without that code's ``+ 1e-6`` (see
``helpers.metrics.cknna``), and the JSON output also gives the CKNNA value with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from helpers import metrics  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "metrics.json"
METRICS = ["linear_cka", "debiased_cka", "mutual_knn", "cknna", "knn_alignment", "modality_gap", "recall_at_k"]
# knn_alignment returns both kNN metrics from one search, so it has no reference of its own.
WITHOUT_REFERENCE = {"knn_alignment"}
# Goals the book states for n = 10 000, d = 512 on a 2-core CPU.
CKA_SPEEDUP_GOAL = 50.0
TOTAL_SECONDS_GOAL = 5.0
ABS_DIFF_GOAL = 1e-5


# ---------------------------------------------------------------------------
# Inputs


def make_inputs(metric: str, n: int, d: int, seed: int) -> tuple:
    """Return the arguments of ``metric`` for seeded random paired data in float32.

    y is a noisy random linear image of x, so every metric is well away from both
    0 and 1. The text embeddings carry a constant offset, which opens a modality gap.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator)
    mixing = torch.randn(d, d, generator=generator) / math.sqrt(d)
    y = x @ mixing
    y += torch.randn(n, d, generator=generator)
    if metric == "modality_gap":
        return (x, y + 0.5)
    if metric == "recall_at_k":
        similarity = F.normalize(x, dim=1) @ F.normalize(y, dim=1).T
        return (similarity, torch.arange(n))
    return (x, y)


# ---------------------------------------------------------------------------
# Dense references


def _biased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    centring = torch.eye(k.shape[0], dtype=k.dtype) - 1.0 / k.shape[0]
    return torch.trace(k @ centring @ l @ centring)


def _unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    k_tilde = k.clone().fill_diagonal_(0)
    l_tilde = l.clone().fill_diagonal_(0)
    trace = (k_tilde * l_tilde.T).sum()
    sums = k_tilde.sum() * l_tilde.sum() / ((n - 1) * (n - 2))
    cross = 2 * (k_tilde @ l_tilde).sum() / (n - 2)
    return (trace + sums - cross) / (n * (n - 3))


def _dense_cka(x: torch.Tensor, y: torch.Tensor, hsic) -> dict:
    k, l = x @ x.T, y @ y.T
    return {"value": float(hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l)))}


def _knn_mask(kernel: torch.Tensor, k: int) -> torch.Tensor:
    n = kernel.shape[0]
    top = kernel.clone().fill_diagonal_(-math.inf).topk(k, dim=1).indices
    return torch.zeros(n, n, dtype=kernel.dtype).scatter_(1, top, 1.0)


def reference_linear_cka(x: torch.Tensor, y: torch.Tensor, k: int) -> dict:
    return _dense_cka(x, y, _biased_hsic)


def reference_debiased_cka(x: torch.Tensor, y: torch.Tensor, k: int) -> dict:
    return _dense_cka(x, y, _unbiased_hsic)


def reference_mutual_knn(x: torch.Tensor, y: torch.Tensor, k: int) -> dict:
    x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    n = x.shape[0]
    rows = torch.arange(n)[:, None]
    masks = []
    for features in (x, y):
        ranking = (features @ features.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]
        mask = torch.zeros(n, n)
        mask[rows, ranking] = 1.0
        masks.append(mask)
    return {"value": float(((masks[0] * masks[1]).sum(dim=1) / k).mean())}


def reference_cknna(x: torch.Tensor, y: torch.Tensor, k: int) -> dict:
    x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    kernel_x, kernel_y = x @ x.T, y @ y.T

    def masked_hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mask = _knn_mask(a, k) * _knn_mask(b, k)
        return _unbiased_hsic(mask * a, mask * b)

    hsic_xy = masked_hsic(kernel_x, kernel_y)
    hsic_xx = masked_hsic(kernel_x, kernel_x)
    hsic_yy = masked_hsic(kernel_y, kernel_y)
    root = torch.sqrt(hsic_xx * hsic_yy)
    return {
        "value": float(hsic_xy / root),
        "value_with_platonic_rep_epsilon": float(hsic_xy / (root + 1e-6)),
        "self_alignment_x": float(hsic_xx),
        "self_alignment_y": float(hsic_yy),
    }


def reference_modality_gap(image: torch.Tensor, text: torch.Tensor, k: int) -> dict:
    gap = F.normalize(image, dim=1).mean(dim=0) - F.normalize(text, dim=1).mean(dim=0)
    return {"value": float(gap.norm())}


def reference_recall_at_k(similarity: torch.Tensor, targets: torch.Tensor, k: int) -> dict:
    ranking = similarity.argsort(dim=1, descending=True)[:, :k]
    return {"value": float((ranking == targets[:, None]).any(dim=1).double().mean())}


REFERENCES = {
    "linear_cka": reference_linear_cka,
    "debiased_cka": reference_debiased_cka,
    "mutual_knn": reference_mutual_knn,
    "cknna": reference_cknna,
    "modality_gap": reference_modality_gap,
    "recall_at_k": reference_recall_at_k,
}


def run_ours(metric: str, inputs: tuple, k: int) -> dict:
    if metric in ("linear_cka", "debiased_cka", "modality_gap"):
        return {"value": getattr(metrics, metric)(*inputs)}
    if metric == "knn_alignment":
        both = metrics.knn_alignment(*inputs, k)
        return {"value": both.cknna, "mutual_knn": both.mutual_knn}
    if metric == "recall_at_k":
        return {"value": metrics.recall_at_k(inputs[0], k, inputs[1])}
    return {"value": getattr(metrics, metric)(*inputs, k)}


# ---------------------------------------------------------------------------
# Worker: one metric, one implementation, one process


def _status_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1))


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _first_samples(metric: str, inputs: tuple, count: int) -> tuple:
    if metric == "recall_at_k":
        similarity, targets = inputs
        return similarity[:count, :count], targets[:count]
    return tuple(value[:count] for value in inputs)


def run_worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    inputs = make_inputs(args.metric, args.n, args.d, args.seed)

    def call(values: tuple) -> dict:
        if args.implementation == "reference":
            return REFERENCES[args.metric](*values, args.k)
        return run_ours(args.metric, values, args.k)

    # A call on 64 samples first pages in the library code that the metric uses, so the
    # memory measured below is that of the data, not of code loaded on first use.
    call(_first_samples(args.metric, inputs, 64))

    repeats = 1 if args.implementation == "reference" else args.repeats
    seconds, cpu_seconds = [], []
    peak_is_per_call = _reset_peak_rss()
    rss_before = _status_kib("VmRSS")
    for repeat in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = call(inputs)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
        if repeat == 0:
            # Later repeats can reuse heap pages that the first call left resident,
            # so only the first call's growth is a fair measure.
            peak_increase_kib = _status_kib("VmHWM") - rss_before

    result.update(
        seconds=statistics.median(seconds),
        seconds_all=seconds,
        cpu_seconds=statistics.median(cpu_seconds),
        peak_increase_mib=peak_increase_kib / 1024,
        torch_threads=torch.get_num_threads(),
        process_peak_mib=_status_kib("VmHWM") / 1024,
        peak_is_per_call=peak_is_per_call,
    )
    print(json.dumps(result))


# ---------------------------------------------------------------------------
# Driver


def measure(metric: str, implementation: str, args: argparse.Namespace, n: int) -> dict:
    command = [
        sys.executable, __file__, "--worker", "--metric", metric, "--implementation", implementation,
        "--n", str(n), "--d", str(args.d), "--k", str(args.k), "--seed", str(args.seed),
        "--repeats", str(args.repeats), "--threads", str(args.threads),
    ]
    timeout = args.reference_timeout if implementation == "reference" else None
    # Other processes on the machine slow every measurement, so record the load beside it.
    load_before = os.getloadavg()[0]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "load_average_before": load_before}
    if completed.returncode != 0:
        return {"error": f"worker failed with exit code {completed.returncode}: {completed.stderr.strip()[-2000:]}"}
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result.update(load_average_before=load_before, load_average_after=os.getloadavg()[0])
    return result


def _format_number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _format_difference(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1e}"


def summarise(rows: list[dict]) -> str:
    header = (
        "| metric | value | ours (s) | ours CPU (s) | reference (s) | reference / ours "
        "| ours peak increase (MiB) | reference peak increase (MiB) | abs difference |"
    )
    lines = [header, "|" + " --- |" * 9]
    for row in rows:
        ours, reference = row["ours"], row.get("reference", {})
        lines.append(
            f"| {row['metric']} | {ours.get('value', float('nan')):.6f} | {_format_number(ours.get('seconds'), 3)} "
            f"| {_format_number(ours.get('cpu_seconds'), 3)} | {_format_number(reference.get('seconds'), 1)} | {_format_number(row.get('speedup'), 0)} "
            f"| {_format_number(ours.get('peak_increase_mib'), 0)} "
            f"| {_format_number(reference.get('peak_increase_mib'), 0)} "
            f"| {_format_difference(row.get('abs_difference'))} |"
        )
    return "\n".join(lines)


def _machine() -> dict:
    cpu_model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu_model = found.group(1) if found else cpu_model
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }


def check_goals(rows: list[dict]) -> dict:
    by_metric = {row["metric"]: row for row in rows}

    def seconds(metric: str) -> float:
        return by_metric[metric]["ours"].get("seconds", math.inf)

    separate = sum(seconds(m) for m in METRICS if m != "knn_alignment")
    shared_search = separate - seconds("mutual_knn") - seconds("cknna") + seconds("knn_alignment")
    differences = [row["abs_difference"] for row in rows if row.get("abs_difference") is not None]
    all_compared = len(differences) == len(REFERENCES)
    return {
        "cka_speedup_goal": CKA_SPEEDUP_GOAL,
        "cka_speedups": {m: by_metric[m].get("speedup") for m in ("linear_cka", "debiased_cka")},
        "cka_speedup_met": None if not all_compared else all(
            by_metric[m]["speedup"] >= CKA_SPEEDUP_GOAL for m in ("linear_cka", "debiased_cka")
        ),
        "total_seconds_goal": TOTAL_SECONDS_GOAL,
        "total_seconds_separate_calls": separate,
        "total_seconds_with_knn_alignment": shared_search,
        "total_seconds_met_separate_calls": separate <= TOTAL_SECONDS_GOAL,
        "total_seconds_met_with_knn_alignment": shared_search <= TOTAL_SECONDS_GOAL,
        "abs_difference_goal": ABS_DIFF_GOAL,
        "max_abs_difference": max(differences) if differences else None,
        "abs_difference_met": max(differences) <= ABS_DIFF_GOAL if all_compared else None,
    }


def run_driver(args: argparse.Namespace) -> None:
    rows = []
    for metric in METRICS:
        print(f"measuring {metric} ...", file=sys.stderr, flush=True)
        row = {"metric": metric, "ours": measure(metric, "ours", args, args.n)}
        if metric not in WITHOUT_REFERENCE and not args.skip_reference:
            reference = measure(metric, "reference", args, args.n)
            row["reference"] = reference
            if "error" not in reference and "error" not in row["ours"]:
                row["speedup"] = reference["seconds"] / row["ours"]["seconds"]
                row["abs_difference"] = abs(row["ours"]["value"] - reference["value"])
        rows.append(row)

    scaling = []
    for n in args.scaling_n:
        print(f"measuring knn_alignment memory at n={n} ...", file=sys.stderr, flush=True)
        result = measure("knn_alignment", "ours", args, n)
        scaling.append({"n": n, **result})

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "n": args.n, "d": args.d, "k": args.k, "seed": args.seed, "repeats": args.repeats,
            "threads": args.threads or torch.get_num_threads(),
        },
        "machine": _machine(),
        "memory_measure": (
            "growth of the worker's resident set size during one call: VmHWM after the call minus "
            "VmRSS before it, with VmHWM reset via /proc/self/clear_refs. Inputs are excluded, a call "
            "on 64 samples runs first, and only the first full-size call is measured"
        ),
        "results": rows,
        "knn_memory_scaling": scaling,
        "goals": check_goals(rows),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(summarise(rows))
    if scaling:
        print("\nknn_alignment peak increase by n: " + ", ".join(
            f"n={row['n']}: {_format_number(row.get('peak_increase_mib'), 0)} MiB" for row in scaling
        ))
    if report["goals"]:
        print("\n" + json.dumps(report["goals"], indent=2))
    print(f"\nwrote {args.output}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of samples (rows)")
    parser.add_argument("--d", type=int, default=512, help="number of features (columns) of x and y")
    parser.add_argument("--k", type=int, default=10, help="neighbours for the kNN metrics and k of Recall@k")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random data")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of our functions; the median is reported")
    parser.add_argument(
        "--reference-timeout", type=float, default=600.0, help="seconds after which a reference run is stopped"
    )
    parser.add_argument("--skip-reference", action="store_true", help="time only helpers.metrics")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads in each worker; 0 keeps the torch default"
    )
    parser.add_argument(
        "--scaling-n", type=int, nargs="*", default=[2500, 5000, 10_000, 20_000],
        help="sample counts at which to measure the memory of knn_alignment",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="path of the JSON report")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--metric", choices=METRICS, help=argparse.SUPPRESS)
    parser.add_argument("--implementation", choices=["ours", "reference"], help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_arguments()
    if arguments.worker:
        run_worker(arguments)
    else:
        run_driver(arguments)
