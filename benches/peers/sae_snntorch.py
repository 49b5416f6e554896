"""snnTorch peer for seeds/004: the spiking convolutional auto-encoder (Huebotter et al. 2022)
as models/sae_dense.snn describes it, timed per training batch on the CPU.

  benches/peers/.venv/bin/python benches/peers/sae_snntorch.py [--batches 5] [--warmup 2]
      [--threads 2] [--steps 100] [--noise 0] [--full-loss] [--seed 0]

MNIST is read from the IDX files (train-images-idx3-ubyte[.gz], ...) in $SNNC_MNIST_DIR
(default ../shared/data/mnist relative to the repository root) with peer_common.load_mnist.
The batches follow a fixed shuffled order of the training set (numpy default_rng(0)
permutation, as peer_common.batch_order, cut into batches of 64).

What is timed: one training step per batch, i.e. the T = 100 step forward pass, the loss,
backward (BPTT through all steps), and Adam's step, with torch.set_num_threads(--threads).
The first --warmup batches (default 2) are run untimed; then each of --batches batches
(default 5) is timed alone with time.perf_counter(). It prints one JSON line on stdout:
the per-batch seconds, their median and mean, batch size, T, threads, the losses, the peak
RSS and the torch and snntorch versions.

The network (models/sae_dense.snn, stdlib BoundedLIF and noisy_bernoulli):
- input 1x28x28, pixel x in [0, 1]; each step a spike where 0.2 x' > U(0,1), redrawn every
  step, x' = (1 - e) x + e U(0,1) drawn once per image, e = --noise (default 0: x' = x).
  T = 100, batch 64.
- conv 1->16 5x5 -> LIF [16,24,24]; conv 16->32 5x5 -> LIF [32,20,20]; flatten ->
  Linear(12800, 100) -> LIF (latent); Linear(100, 12800) -> LIF, viewed as [32,20,20];
  ConvTranspose2d 32->16 5x5 -> LIF [16,24,24]; ConvTranspose2d 16->1 5x5 -> LIF [1,28,28].
  Stride 1, no padding, no biases anywhere. Weights Kaiming-normal N(0, 2 / fan_in) with
  snnc's fan_in: input features for Linear, source channels * 25 for both convolution kinds
  (torch's kaiming_normal_ would take the *output* channels of a ConvTranspose2d weight, so
  the std is set by hand).
- LIF = BoundedLIF: u(t) = max(0.99 u(t-1) + i(t), -1), spike when u >= 1, then u = 0. Written
  with snntorch: snn.Leaky(beta=0.99, threshold=1, reset_mechanism="zero",
  spike_grad=StraightThroughAbove.apply), Heaviside forward and gradient 1 backward where
  the membrane reaches the threshold, 0 below (the model files' straight_through_above). snn.Leaky has no lower bound, so plain torch adds it: the membrane it returns
  (before the reset, which snntorch applies at the start of the next step) is clamped at -1
  before it is passed back. snntorch detaches the reset (no gradient through it) and its
  Heaviside fires on u > 1 rather than u >= 1 (differs only at exact equality).
- Output (plain torch): the cumulative potential U(t) = 0.99 (U(t-1) + i(t)) of the last
  layer, the input current summed as the authors' code does (stdlib BoundedLIFCurrent, which
  the model files use), max over t, divided by T s = 20 (the authors' decoder scaling). Every
  layer keeps its U(t) for P2.
- Loss: the squared error summed over the 784 pixels, mean over the batch (L_rec). With
  --full-loss also the model file's regularisers: p2 = 0.01 * sum over the six layers of
  sum((U(T) / T)^2) (the cumulative potential at the last step over T) and a1 = 0.1 * sum over the 100
  latent neurons of their spike rate (spikes / T), both mean over the batch.
- Adam(lr 5e-4, betas 0.9, 0.999).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import snntorch as snn
from snntorch import surrogate

import peer_common as common

BATCH = 64
class StraightThroughAbove(torch.autograd.Function):
    """models/sae_*.snn's `straight_through_above`: Heaviside forward, gradient 1 where the
    membrane reaches the threshold (x = u - threshold >= 0), 0 below it (the authors' code)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).float()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x >= 0).float()


BETA = 0.99
THRESHOLD = 1.0
SCALE = 0.2  # the encoder's spike probability scale; the read-out divides by steps * SCALE
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kaiming_normal_(weight, fan_in):
    with torch.no_grad():
        weight.normal_(0.0, (2.0 / fan_in) ** 0.5)


class SpikingAutoEncoder(nn.Module):
    def __init__(self, steps, noise):
        super().__init__()
        self.steps = steps
        self.noise = noise
        self.c1 = nn.Conv2d(1, 16, 5, bias=False)
        self.c2 = nn.Conv2d(16, 32, 5, bias=False)
        self.enc = nn.Linear(32 * 20 * 20, 100, bias=False)
        self.dec = nn.Linear(100, 32 * 20 * 20, bias=False)
        self.d2 = nn.ConvTranspose2d(32, 16, 5, bias=False)
        self.out = nn.ConvTranspose2d(16, 1, 5, bias=False)
        kaiming_normal_(self.c1.weight, 1 * 25)
        kaiming_normal_(self.c2.weight, 16 * 25)
        kaiming_normal_(self.enc.weight, 32 * 20 * 20)
        kaiming_normal_(self.dec.weight, 100)
        kaiming_normal_(self.d2.weight, 32 * 25)
        kaiming_normal_(self.out.weight, 16 * 25)
        grad = StraightThroughAbove.apply
        self.lifs = nn.ModuleList(
            snn.Leaky(beta=BETA, threshold=THRESHOLD, reset_mechanism="zero", spike_grad=grad)
            for _ in range(6))

    def currents(self, layer, spikes):
        """The input current of layer `layer` (0..5) from the spikes of the layer before."""
        if layer == 0:
            return self.c1(spikes)
        if layer == 1:
            return self.c2(spikes)
        if layer == 2:
            return self.enc(spikes.flatten(1))
        if layer == 3:
            return self.dec(spikes).view(-1, 32, 20, 20)
        if layer == 4:
            return self.d2(spikes)
        return self.out(spikes)

    def forward(self, x):
        """x: (B, 1, 28, 28) in [0, 1]. Returns the read-out (B, 1, 28, 28), the membranes after
        the last step (after reset and bound) and the latent spike count (B, 100)."""
        mems = [None] * 6  # u = 0 at t = 0, shaped like each layer's current
        cumulative = [0.0] * 6  # every layer's U(t), for the read-out and P2
        peak = None
        latent_count = 0
        # The noise is drawn once per image (rand_per_sample() in stdlib's noisy_bernoulli).
        p = x if self.noise == 0 else (1 - self.noise) * x + self.noise * torch.rand_like(x)
        for _ in range(self.steps):
            spikes = (torch.rand_like(x) < SCALE * p).float()
            for layer, lif in enumerate(self.lifs):
                current = self.currents(layer, spikes)
                if mems[layer] is None:  # not lif's own buffer: it holds the last batch's u
                    mems[layer] = torch.zeros_like(current)
                spikes, u = lif(current, mems[layer])
                if layer == 2:
                    latent_count = latent_count + spikes
                # BoundedLIFCurrent: U(t) = 0.99 (U(t - 1) + i(t)), the input current summed.
                cumulative[layer] = BETA * (cumulative[layer] + current)
                if layer == 5:
                    peak = cumulative[5] if peak is None else torch.maximum(peak, cumulative[5])
                mems[layer] = u.clamp(min=-THRESHOLD)  # BoundedLIF's lower bound
        # P2 reads every layer's cumulative potential at the last step.
        return peak / (self.steps * SCALE), cumulative, latent_count


def loss_fn(net, x, full):
    readout, last, latent_count = net(x)
    rec = (readout - x).square().flatten(1).sum(1).mean()
    if not full:
        return rec
    p2 = sum((m / net.steps).square().flatten(1).sum(1) for m in last).mean()
    a1 = (latent_count / net.steps).sum(1).mean()
    return rec + 0.01 * p2 + 0.1 * a1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=5, help="timed batches of 64")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=100, help="time steps T")
    p.add_argument("--noise", type=float, default=0.0, help="the encoder's noise share e")
    p.add_argument("--full-loss", action="store_true",
                   help="add the model file's p2 and a1 regularisers to L_rec")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=os.environ.get(
        "SNNC_MNIST_DIR", os.path.join(REPO, "..", "shared", "data", "mnist")))
    args = p.parse_args()
    if args.batches < 1 or args.warmup < 0:
        raise SystemExit("--batches must be at least 1 and --warmup at least 0")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    images, _ = common.load_mnist(args.data, "train")
    n_batches = len(images) // BATCH
    if args.warmup + args.batches > n_batches:
        raise SystemExit(f"at most {n_batches} batches in all (one epoch)")
    order = np.random.default_rng(0).permutation(len(images))[: n_batches * BATCH]
    order = order.reshape(-1, BATCH)
    images = torch.from_numpy(images).view(-1, 1, 28, 28)

    net = SpikingAutoEncoder(args.steps, args.noise)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))

    def train_step(index):
        x = images[torch.from_numpy(order[index])]
        loss = loss_fn(net, x, args.full_loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    losses = []
    started = time.perf_counter()
    for index in range(args.warmup):
        losses.append(train_step(index))
    warmup_s = time.perf_counter() - started
    times = []
    for index in range(args.warmup, args.warmup + args.batches):
        started = time.perf_counter()
        losses.append(train_step(index))
        times.append(time.perf_counter() - started)

    print(json.dumps({
        "peer": "snntorch",
        "model": "sae_dense",
        "batch_seconds": [round(t, 4) for t in times],
        "median_s": round(statistics.median(times), 4),
        "mean_s": round(statistics.mean(times), 4),
        "warmup_batches": args.warmup,
        "warmup_s": round(warmup_s, 3),
        "batch": BATCH,
        "steps": args.steps,
        "threads": args.threads,
        "noise": args.noise,
        "full_loss": args.full_loss,
        "losses": [round(l, 3) for l in losses],
        "peak_rss_mib": round(common.peak_rss_mib()),
        "torch": torch.__version__,
        "snntorch": snn.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
