"""The AdamW update alone, on parameters shaped like the base preset's: ATen's
fused kernel (what plinth's AdamW calls) against the composed eight-kernel update
(what it did before), in the same process and thread count. Median of 5 timings
after one warm-up, milliseconds per step.

    .venv/bin/python bench/optimizer.py [--threads 2]
"""

import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d, ff, kv, layers, vocab = 512, 1376, 128, 8, 8000  # configs/models/base.toml, 8000-token vocabulary
    shapes = [(vocab, d)] + [(d, d), (kv, d), (kv, d), (d, d), (ff, d), (ff, d), (d, ff)] * layers + [(d,)] * (2 * layers + 1)
    ps = [torch.randn(s) for s in shapes]
    gs = [torch.randn(s) for s in shapes]
    ms = [torch.zeros(s) for s in shapes]
    vs = [torch.zeros(s) for s in shapes]
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.95, 1e-8, 0.1

    def composed():
        bc1, bc2 = 1 - b1, (1 - b2) ** 0.5
        with torch.no_grad():
            for p, g, m, v in zip(ps, gs, ms, vs):
                m.lerp_(g, 1 - b1)
                v.lerp_(g.square(), 1 - b2)
                if p.dim() == 2:
                    p.mul_(1 - lr * wd)
                p.addcdiv_(m, v.sqrt().div_(bc2).add_(eps).mul_(-bc1 / lr))

    steps = [torch.tensor(1.0) for _ in ps]

    def fused():
        with torch.no_grad():
            torch._fused_adamw_(ps, gs, ms, vs, [], steps, lr=lr, beta1=b1, beta2=b2, weight_decay=wd, eps=eps,
                                amsgrad=False, maximize=False)

    print(f"{sum(p.numel() for p in ps) / 1e6:.1f}M parameters, {args.threads} threads")
    for f in (composed, fused):
        f()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        print(f"{f.__name__}: {statistics.median(times) * 1000:.1f} ms per step")


if __name__ == "__main__":
    main()
