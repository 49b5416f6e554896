"""What every peer shares, so that they differ only in the framework under test: the MNIST
reader, the command line, the order of the training batches, the timing rule and the one line
that benches/compare.sh parses.

The timing rule: the `--warmup` batches (3 by default; compilation and tracing happen there)
are excluded from the rate and their wall time is reported as "compile"; the rate is training
samples per second over the `--batches` batches that follow (forward, loss, backward and
optimizer step, the host->device copy of the batch included, as in a real training loop).
"""
import argparse
import gzip
import os
import resource
import struct

import numpy as np

BATCH = 128
# The surrogate that snnc's model file of each configuration uses, so that every peer trains
# the same network as snnc by default (models/snntorch_tutorial5.snn: atan(alpha = 2);
# models/lab_lif_mnist.snn: fast_sigmoid(slope = 2)).
DEFAULT_SURROGATE = {"tutorial5": "atan", "lab": "fast_sigmoid"}
# Per configuration: hidden size, steps, beta, threshold.
CONFIGS = {"tutorial5": (1000, 25, 0.95, 1.0), "lab": (10, 50, 0.1, 1.0)}


def _open_idx(directory, stem):
    # The shared MNIST folder holds .gz files, other copies are unpacked or use a dot before
    # "idx"; accept all of them rather than make the user rename files.
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix, opener in ((".gz", gzip.open), ("", open)):
            path = os.path.join(directory, name + suffix)
            if os.path.exists(path):
                return opener(path, "rb")
    raise FileNotFoundError(f"no {stem}[.gz] in {directory} (set SNNC_MNIST_DIR)")


def load_mnist(directory, split, limit=None):
    """Images as float32 in [0, 1], shape (n, 784), and labels as int64: the pixel value is the
    input current (tutorial 5) or the spike probability per step (lab). With `limit`, only the
    first `limit` samples are read."""
    prefix = "train" if split == "train" else "t10k"
    with _open_idx(directory, f"{prefix}-images-idx3-ubyte") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803, f"bad image magic {magic:#x}"
        n = n if limit is None else min(n, limit)
        images = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8).reshape(n, rows * cols)
    with _open_idx(directory, f"{prefix}-labels-idx1-ubyte") as f:
        magic, n_labels = struct.unpack(">II", f.read(8))
        assert magic == 0x801 and n_labels >= n, "bad label file"
        labels = np.frombuffer(f.read(n), dtype=np.uint8)
    images = images.astype(np.float32)
    images /= 255.0  # in place: a second 188 MB copy would show in the peak RSS
    return images, labels.astype(np.int64)


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("config", choices=sorted(CONFIGS))
    p.add_argument("--hoist", action="store_true",
                   help="tutorial5: the input projection once per sample instead of once per "
                        "step (the input is constant over time); lab: the input projection of "
                        "all steps as one matrix product before the time loop")
    p.add_argument("--surrogate", choices=["atan", "fast_sigmoid"],
                   help="default: the one snnc's model file uses")
    p.add_argument("--batches", type=int, default=30, help="timed batches of 128")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--accuracy", action="store_true",
                   help="train one whole epoch (the rate is taken over it, after warm-up), "
                        "then report the test accuracy")
    p.add_argument("--data", default=os.environ.get("SNNC_MNIST_DIR", "data/mnist"))
    return p


def finish_args(args):
    args.surrogate = args.surrogate or DEFAULT_SURROGATE[args.config]
    args.warmup = max(args.warmup, 1)  # the first step compiles: never timed
    if args.accuracy:
        args.batches = len_epoch() - args.warmup
    if args.warmup + args.batches > len_epoch():
        raise SystemExit(f"at most {len_epoch()} batches in all (one epoch)")
    return args


def len_epoch():
    return 60000 // BATCH


def batch_order(n_train):
    """A fixed shuffled order of the training set, the same in every peer; the last partial
    batch is dropped so that every step has the same shape (no recompilation)."""
    order = np.random.default_rng(0).permutation(n_train)
    return order[: (n_train // BATCH) * BATCH].reshape(-1, BATCH)


def limit_cpus(threads):
    """Make XLA use `threads` threads. XLA's CPU client has no thread-count setting: it sizes
    its intra-op pool from the CPUs this process may run on, read when the backend starts (at
    the first JAX operation, so this must run before any). Restricting the affinity is that
    setting; on a machine with exactly `threads` CPUs it changes nothing."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > threads:
        os.sched_setaffinity(0, cpus[:threads])


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(name, args, elapsed, compile_s, accuracy=None, variant=()):
    """The one line benches/compare.sh parses: "<label>: <N> training samples/s, ...", the
    label naming peer, configuration and variant (no colon in it)."""
    label = " ".join([name, args.config] + (["hoisted"] if args.hoist else []) + list(variant))
    line = (f"{label}: {args.batches * BATCH / elapsed:.0f} training samples/s, "
            f"compile {compile_s:.1f} s, surrogate {args.surrogate}")
    if accuracy is not None:
        line += f", test accuracy {100 * accuracy:.2f}%"
    print(line + f", peak RSS {peak_rss_mib():.0f} MiB", flush=True)
