"""MIL training benchmark: seconds per epoch and peak memory, one bag per step, on generated bags.

Prints a table. Issue #10 asks for 400 bags averaging 10k x 1024 features (CLAM's ResNet-50 layer3
features). Bags are generated when the training loop asks for them (bag i from seed i; sizes uniform
in [T/2, 3T/2]; a tumour bag has one planted tile), so peak memory is that of training, not of a
16 GB cohort held in memory; generating them is timed on its own and reported beside the epoch.
A last row times one training step on a single bag of 100k tiles (the memory a large slide needs).
Each measurement runs in a fresh process (its own peak RSS).

    python benchmarks/bench_mil.py                        # 400 bags x 10k tiles, 1 epoch per model
    python benchmarks/bench_mil.py --bags 40 --tiles 2000 # a quick run
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, run_fresh  # noqa: E402


class GeneratedBags:
    """Bag i: ``(N_i, dim)`` float32 N(0, 1) features made from seed i when indexed (nothing kept)."""

    def __init__(self, n: int, tiles: int, dim: int, seed: int = 0) -> None:
        import numpy as np

        rng = np.random.default_rng(seed)
        self.sizes = rng.integers(max(1, tiles // 2), tiles + tiles // 2 + 1, n)
        self.dim, self.seed = dim, seed

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int):
        import torch

        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        x = torch.randn(int(self.sizes[i]), self.dim, generator=g)
        if i % 2:
            x[int(self.sizes[i]) // 2, 0] += 5.0
        return x.numpy()


def train_case(arch: str, bags: int, tiles: int, dim: int, epochs: int, q: mp.Queue) -> None:
    import torch

    from cadx.datasets.bags import BagDataset
    from cadx.models.factory import create_model
    from cadx.training.mil import MilFitSettings, fit_mil

    torch.set_num_threads(os.cpu_count() or 1)
    data = GeneratedBags(bags, tiles, dim)
    train = BagDataset.from_arrays(data, [i % 2 for i in range(bags)])
    t0 = time.perf_counter()
    for i in range(len(data)):
        data[i]
    gen_s = time.perf_counter() - t0
    torch.optim.AdamW(torch.nn.Linear(1, 1).parameters())  # its first use imports torch's compiler (seconds)
    base = peak_rss_mb()
    model = create_model(arch, kind="mil", in_chans=dim)
    t0 = time.perf_counter()
    fit_mil(model, train, None, MilFitSettings(epochs=epochs, patience=None))
    seconds = (time.perf_counter() - t0) / epochs
    q.put({"epoch_s": seconds, "gen_s": gen_s, "tiles": int(data.sizes.sum()), "rss": peak_rss_mb(), "base": base})


def big_bag_case(arch: str, tiles: int, dim: int, q: mp.Queue) -> None:
    import torch

    from cadx.models.factory import create_model
    from cadx.training.mil import mil_loss

    torch.set_num_threads(os.cpu_count() or 1)
    x = torch.randn(tiles, dim)
    torch.optim.AdamW(torch.nn.Linear(1, 1).parameters())  # its first use imports torch's compiler (seconds)
    base = peak_rss_mb()
    model = create_model(arch, kind="mil", in_chans=dim)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-5)
    t0 = time.perf_counter()
    loss = mil_loss(0.3 if arch == "abmil" else 0.0)(model(x), torch.tensor(1))
    loss.backward()
    opt.step()
    q.put({"step_s": time.perf_counter() - t0, "rss": peak_rss_mb(), "base": base})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bags", type=int, default=400, help="generated bags (slides)")
    ap.add_argument("--tiles", type=int, default=10_000, help="average tiles per bag")
    ap.add_argument("--dim", type=int, default=1024, help="feature length D")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--big-tiles", type=int, default=100_000, help="tiles of the single-bag step (0: skip)")
    ap.add_argument("--models", default="abmil,maxmil")
    args = ap.parse_args()

    rows = []
    for arch in args.models.split(","):
        r = run_fresh(train_case, arch, args.bags, args.tiles, args.dim, args.epochs)
        rows.append((f"{arch} (train, {args.bags} bags)", f"{r['epoch_s']:.1f}",
                     f"{r['tiles'] / r['epoch_s']:.0f}", f"{r['gen_s']:.1f}", f"{r['rss']:.0f}",
                     f"{r['rss'] - r['base']:.0f}"))
        if args.big_tiles:
            b = run_fresh(big_bag_case, arch, args.big_tiles, args.dim)
            rows.append((f"{arch} (one step, one bag of {args.big_tiles} tiles)", f"{b['step_s']:.2f} (one step)",
                         f"{args.big_tiles / b['step_s']:.0f}", "-", f"{b['rss']:.0f}", f"{b['rss'] - b['base']:.0f}"))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
          f"{args.bags} generated bags averaging {args.tiles} x {args.dim} features, one bag per step, "
          f"AdamW, {args.epochs} epoch(s), no validation\n")
    print("| model | seconds per epoch (incl. making the bags) | tiles/s | of which making the bags (s) "
          "| peak RSS (MB) | peak RSS above the loaded process (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
