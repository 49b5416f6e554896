"""The multi-compartment energy network of seeds/000 trained with FPTT in PyTorch, written from
../shared/REFERENCE.md section D and the training loop of the authors' code, as a peer for
`snnc run models/energy_*.snn`: the same data, sizes, neuron, surrogate, optimiser and
regulariser, so that learning curves and training rates can be put side by side.

What the authors' loop does, and this script with it:
- the state is detached before every step, so each update's gradient runs through one step
  (the feed-forward path of that step); snnc's `fptt(..., truncate = 1)` is the same;
- an update at steps t = 5, 10, ..., 45 (t % omega == 0 and t > 0), the NLL of the readout at
  that step weighted by (t + 1) / K;
- the regulariser (rho - 1) sum(W lambda) + alpha / 2 ||W - W_bar||^2 with rho = 0, then the
  running correction and mean; the parameters set to the running mean after each epoch.
`--window` instead detaches only at the windows' starts and takes the NLL at each window's last
step weighted by (p + 1) / K, as snnc's files do by default (`--rho` sets rho).

    .venv/bin/python fptt_energy_torch.py --mnist DIR [--limit-train N] [--limit-test N] [--epochs E]
        [--energy 0.05] [--spike 0.01] [--threads 2] [--window] [--rho 0] [--no-bias]
"""

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F

import peer_common as common


def mnist(folder, split, limit):
    """Images normalised as the authors' loader does, (x - 0.5) / 0.5, and labels."""
    images, labels = common.load_mnist(folder, split, limit)
    return torch.from_numpy((images - 0.5) / 0.5), torch.from_numpy(labels)


class GaussianMixture(torch.autograd.Function):
    """Heaviside forward; the Gaussian-mixture surrogate of REFERENCE.md backward (sigma 0.5,
    side lobes at +-0.5 six times as wide and 0.15 high, scale 0.5)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).float()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        def gauss(mu, sigma):
            return torch.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
        sigma, width, height = 0.5, 6.0, 0.15
        g = gauss(0.0, sigma) * (1 + height) - gauss(sigma, width * sigma) * height - gauss(-sigma, width * sigma) * height
        return grad * g * 0.5


spike_fn = GaussianMixture.apply


class Energy(torch.nn.Module):
    def __init__(self, sizes=(600, 500, 500), classes=10, bias=True, dt=0.5):
        super().__init__()
        self.sizes, self.dt = sizes, dt
        dims = (784,) + tuple(sizes)
        self.ff = torch.nn.ModuleList(torch.nn.Linear(a, b, bias=bias) for a, b in zip(dims[:-1], dims[1:]))
        # Top-down: layer l + 1's spikes to layer l's apical tuft; the readout to layer 3's.
        self.fb = torch.nn.ModuleList(torch.nn.Linear(b, a, bias=bias) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fb.append(torch.nn.Linear(classes, sizes[-1], bias=bias))
        self.out = torch.nn.Linear(sizes[-1], classes, bias=bias)
        for layer in list(self.ff) + list(self.fb) + [self.out]:
            torch.nn.init.xavier_uniform_(layer.weight)
            if bias:
                torch.nn.init.zeros_(layer.bias)
        self.tau_m = torch.nn.ParameterList(torch.nn.Parameter(torch.normal(15.0, 0.1, (n,))) for n in sizes)
        self.tau_a = torch.nn.ParameterList(torch.nn.Parameter(torch.normal(15.0, 0.1, (n,))) for n in sizes)
        self.tau_adp = torch.nn.ParameterList(torch.nn.Parameter(torch.normal(20.0, 0.1, (n,))) for n in sizes)
        self.tau_out = torch.nn.Parameter(torch.full((classes,), 5.0))
        self.dropout = torch.nn.Dropout(0.4)

    def init_state(self, batch):
        layers = [
            {"s": torch.rand(batch, n), "z": torch.zeros(batch, n), "a": torch.zeros(batch, n), "b": torch.full((batch, n), 0.1)}
            for n in self.sizes
        ]
        return layers, torch.zeros(batch, self.out.out_features)

    def step(self, x, layers, readout):
        """One step; returns the log-softmax of the readout, the new states and the per-layer
        |apical - soma| and spikes of this step."""
        below = self.dropout(x)
        new, energies, spikes = [], [], []
        for i, h in enumerate(layers):
            above = layers[i + 1]["z"] if i + 1 < len(layers) else F.normalize(readout, dim=1)
            ff, fb = self.ff[i](below), self.fb[i](above)
            alpha = torch.exp(-self.dt / self.tau_m[i])
            eta = torch.exp(-self.dt / self.tau_a[i])
            rho = torch.exp(-self.dt / self.tau_adp[i])
            b = rho * h["b"] + (1 - rho) * h["z"]
            theta = 0.1 + 1.8 * b
            a = eta * h["a"] + fb
            s = alpha * h["s"] + (torch.sigmoid(a) - 0.5) / 2 + ff - theta * h["z"]
            z = spike_fn(s - theta)
            new.append({"s": s, "z": z, "a": a, "b": b})
            energies.append((a - s).abs().sum())
            spikes.append(z.sum())
            below = z
        readout = (readout + self.out(below)) * torch.exp(-self.dt / self.tau_out)
        return F.log_softmax(readout, dim=1), new, readout, energies, spikes


def detach(layers, readout):
    return [{k: v.detach() for k, v in h.items()} for h in layers], readout.detach()


class Fptt:
    def __init__(self, model, alpha, beta, rho):
        self.params = [p for p in model.parameters()]
        self.mean = [p.detach().clone() for p in self.params]
        self.corr = [torch.zeros_like(p) for p in self.params]
        self.alpha, self.beta, self.rho = alpha, beta, rho

    def regulariser(self):
        total = 0.0
        for p, m, l in zip(self.params, self.mean, self.corr):
            total = total + (self.rho - 1.0) * (p * l).sum() + 0.5 * self.alpha * ((p - m) ** 2).sum()
        return total

    @torch.no_grad()
    def after_step(self):
        for p, m, l in zip(self.params, self.mean, self.corr):
            l.add_(-self.alpha * (p - m))
            m.mul_(1.0 - self.beta).add_(self.beta * p - (self.beta / self.alpha) * l)

    @torch.no_grad()
    def reset(self):
        for p, m in zip(self.params, self.mean):
            p.copy_(m)


def train_epoch(model, fptt, optimizer, images, labels, args, log):
    model.train()
    steps, k = 50, 10
    omega = steps // k
    n = sum(model.sizes)
    correct, seen, spikes_total = 0, 0, 0.0
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    for start in range(0, len(images), args.batch):
        idx = order[start : start + args.batch]
        x, y = images[idx], labels[idx]
        bsz = len(y)
        layers, readout = model.init_state(bsz)
        window_energy, window_spikes = [], []
        for t in range(steps):
            if args.window:
                if t > 0 and t % omega == 0:
                    layers, readout = detach(layers, readout)
            elif t > 0:
                layers, readout = detach(layers, readout)
            logp, layers, readout, energies, spikes = model.step(x, layers, readout)
            spikes_total += sum(float(s) for s in spikes)
            if args.window:
                update, weight = (t + 1) % omega == 0, ((t + 1) // omega) / k
            else:
                update, weight = t > 0 and t % omega == 0, (t + 1) / k
            if not update:
                continue
            loss = weight * F.nll_loss(logp, y) + fptt.regulariser()
            if args.energy > 0:
                loss = loss + args.energy * sum(energies) / (bsz * n)
            if args.spike > 0:
                loss = loss + args.spike * sum(spikes) / (bsz * n)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            fptt.after_step()
        correct += int((logp.argmax(1) == y).sum())
        seen += bsz
        if log and (start // args.batch) % 8 == 7:
            print(f"  {seen} samples, running training accuracy {100 * correct / seen:.2f}%", flush=True)
    return correct / seen, spikes_total / (seen * n)


@torch.no_grad()
def test(model, images, labels, batch=1000):
    model.eval()
    correct = 0
    for start in range(0, len(images), batch):
        x, y = images[start : start + batch], labels[start : start + batch]
        layers, readout = model.init_state(len(y))
        for _ in range(50):
            logp, layers, readout, _, _ = model.step(x, layers, readout)
        correct += int((logp.argmax(1) == y).sum())
    return correct / len(images)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=os.environ.get("SNNC_MNIST_DIR", "data/mnist"))
    ap.add_argument("--limit-train", type=int, default=60000)
    ap.add_argument("--limit-test", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--energy", type=float, default=0.0)
    ap.add_argument("--spike", type=float, default=0.0)
    ap.add_argument("--rho", type=float, default=0.0)
    ap.add_argument("--window", action="store_true")
    ap.add_argument("--no-bias", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, train_y = mnist(args.mnist, "train", args.limit_train)
    test_x, test_y = mnist(args.mnist, "test", args.limit_test)
    model = Energy(bias=not args.no_bias)
    optimizer = torch.optim.Adamax(model.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    fptt = Fptt(model, alpha=0.2, beta=0.5, rho=args.rho)
    results = []
    for epoch in range(args.epochs):
        began = time.perf_counter()
        train_acc, rate = train_epoch(model, fptt, optimizer, train_x, train_y, args, log=True)
        seconds = time.perf_counter() - began
        fptt.reset()
        acc = test(model, test_x, test_y)
        schedule.step()
        row = {
            "epoch": epoch + 1,
            "train_accuracy": train_acc,
            "test_accuracy": acc,
            "spikes_per_neuron_per_sample": rate,
            "train_samples_per_second": len(train_x) / seconds,
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
