"""Shares of a one-thread `coconut bench` training window, from `perf script -F tid,time,ip,sym` on stdin.

The window starts at the first sample of the fused attention's backward (the training's first step)
and ends at the first sample from a thread other than the main thread and the one-thread pool's (the
bench's two-thread measurement). Prints each kernel group's share, the samples per GEMM micro-kernel
sample of the whole step and of the attention kernels, and the groups that grow from the window's
first third (stage 0) to its last (stage 6). Used by benchmarks/cpu-step/profile.sh.
"""
import collections
import sys

GROUPS = [
    ("gemm_f32::microkernel", "GEMM micro-kernel"),
    ("gemm_common::simd", "GEMM packing"),
    ("attention_head_backward", "attention backward"),
    ("attention_head::", "attention forward"),
    ("attention_one_backward", "thought attention backward"),
    ("attention_few", "thought attention forward"),
    ("memmove", "memmove"),
    ("memset", "memset"),
    ("zip_apply_inplace", "element-wise (zip)"),
    ("copy_2d_tiled", "strided copies"),
    ("gather_transposed", "head transposes"),
]


def group(sym):
    return next((name for key, name in GROUPS if key in sym), "rest")


def main():
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    rows = []
    for line in sys.stdin:
        parts = line.split(None, 3)
        if len(parts) < 3:
            continue
        rows.append((int(parts[0]), float(parts[1].rstrip(":")), parts[3].strip() if len(parts) > 3 else "?"))
    start = next(i for i, r in enumerate(rows) if "attention_head_backward" in r[2])
    threads = {rows[0][0], rows[start][0]}
    end = next((i for i in range(start, len(rows)) if rows[i][0] not in threads), len(rows))
    window = rows[start:end]
    n = len(window)
    counts = collections.Counter(group(s) for _, _, s in window)
    gemm = counts["GEMM micro-kernel"]
    attention = counts["attention backward"] + counts["attention forward"]
    print(f"{label}: {n} samples over {window[-1][1] - window[0][1]:.1f} s; step / GEMM {n / gemm:.3f}, attention / GEMM {attention / gemm:.3f}")
    print("  " + ", ".join(f"{name} {c / n * 100:.1f}%" for name, c in counts.most_common()))
    first, last = window[: n // 3], window[2 * n // 3 :]
    a = collections.Counter(group(s) for _, _, s in first)
    b = collections.Counter(group(s) for _, _, s in last)
    grown = sorted(b, key=lambda k: -(b[k] / len(last) - a[k] / len(first)))[:5]
    print("  stage 0 → 6 (first → last third): " + ", ".join(f"{k} {a[k] / len(first) * 100:.1f} → {b[k] / len(last) * 100:.1f}%" for k in grown))


if __name__ == "__main__":
    main()
