"""snnTorch implementations of the configurations snnc is compared on, timed the same way:
training samples per second over a fixed number of batches after warm-up, and peak RSS.

  python snntorch_peer.py tutorial5 [--hoist] --batches 30
  python snntorch_peer.py lab --batches 30

tutorial5: snnTorch tutorial 5, 784-1000-10 Leaky (beta 0.95, threshold 1, atan surrogate),
T = 25, the image as a constant current, loss = sum over steps of CE(membrane), Adam 5e-4,
batch 128. --hoist computes the first layer once per sample instead of once per step.
lab: seeds/003, 784-10-10 Leaky (beta 0.1), fast sigmoid (slope 2), T = 50, Bernoulli
input, MSE between output rates and one-hot targets, Adam 5e-4, batch 128.
Unlike snnc's models the snnTorch layers (nn.Linear) have biases, as in the tutorial.
"""
import argparse
import gzip
import os
import resource
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import snntorch as snn
from snntorch import surrogate


def load_images(directory):
    with gzip.open(os.path.join(directory, "train-images-idx3-ubyte.gz")) as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        images = np.frombuffer(f.read(), dtype=np.uint8).reshape(n, rows * cols).astype(np.float32) / 255.0
    with gzip.open(os.path.join(directory, "train-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        labels = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


class Tutorial5(nn.Module):
    def __init__(self, hoist):
        super().__init__()
        self.hoist = hoist
        self.fc1 = nn.Linear(784, 1000)
        self.lif1 = snn.Leaky(beta=0.95, spike_grad=surrogate.atan())
        self.fc2 = nn.Linear(1000, 10)
        self.lif2 = snn.Leaky(beta=0.95, spike_grad=surrogate.atan())

    def forward(self, x, steps=25):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        mems = []
        cur1 = self.fc1(x) if self.hoist else None
        for _ in range(steps):
            spk1, mem1 = self.lif1(cur1 if self.hoist else self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            mems.append(mem2)
        return torch.stack(mems)


class Lab(nn.Module):
    def __init__(self):
        super().__init__()
        grad = surrogate.fast_sigmoid(slope=2)
        self.fc1 = nn.Linear(784, 10)
        self.lif1 = snn.Leaky(beta=0.1, spike_grad=grad)
        self.fc2 = nn.Linear(10, 10)
        self.lif2 = snn.Leaky(beta=0.1, spike_grad=grad)

    def forward(self, x, steps=50):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spikes = []
        for _ in range(steps):
            inp = (torch.rand_like(x) < x).float()
            spk1, mem1 = self.lif1(self.fc1(inp), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
        return torch.stack(spikes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config", choices=["tutorial5", "lab"])
    parser.add_argument("--hoist", action="store_true")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=os.environ.get("SNNC_MNIST_DIR", "data/mnist"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, labels = load_images(args.data)
    batch = 128
    net = Tutorial5(args.hoist) if args.config == "tutorial5" else Lab()
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    ce = nn.CrossEntropyLoss()
    mse = nn.MSELoss()
    started = None
    for index in range(args.warmup + args.batches):
        if index == args.warmup:
            started = time.perf_counter()
        x = images[index * batch:(index + 1) * batch]
        y = labels[index * batch:(index + 1) * batch]
        out = net(x)
        if args.config == "tutorial5":
            loss = sum(ce(out[t], y) for t in range(out.shape[0]))
        else:
            loss = mse(out.sum(0) / out.shape[0], nn.functional.one_hot(y, 10).float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    name = args.config + (" hoisted" if args.hoist else "")
    print(f"snntorch {name}: {args.batches * batch / elapsed:.0f} training samples/s, peak RSS {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
