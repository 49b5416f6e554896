"""snnTorch peer: the configurations snnc is compared on, written as the snnTorch tutorials
write them, timed by the rule in peer_common.py.

  python snntorch_peer.py tutorial5 [--hoist] [--compile] --batches 30
  python snntorch_peer.py lab [--hoist] [--compile] --batches 30

tutorial5: snnTorch tutorial 5, 784-1000-10 Leaky (beta 0.95, threshold 1, subtractive reset),
T = 25, the image as a constant input current every step, loss = sum over steps of
CE(output membrane), Adam 5e-4, batch 128; prediction = most output spikes.
lab: seeds/003, 784-10-10 Leaky (beta 0.1, threshold 1), T = 50, Bernoulli input drawn anew
each step, MSE between output spike rates and one-hot targets, Adam 5e-4, batch 128.
Unlike snnc's models the layers (nn.Linear) have biases, as in the tutorial.

--compile wraps the forward pass and the loss in torch.compile (inductor, C++ on the CPU):
it traces the time loop unrolled, so the forward and backward become one generated kernel
graph each. The optimizer step stays eager (a handful of fused element-wise passes).
"""
import time

import numpy as np
import torch
import torch.nn as nn
import snntorch as snn
from snntorch import surrogate

import peer_common as common


def spike_grad(name):
    # Same slopes as snnc's model files: atan(alpha = 2) and fast_sigmoid(slope = 2).
    return surrogate.atan(alpha=2.0) if name == "atan" else surrogate.fast_sigmoid(slope=2)


class Net(nn.Module):
    def __init__(self, config, hoist, surrogate_name):
        super().__init__()
        hidden, self.steps, beta, threshold = common.CONFIGS[config]
        self.bernoulli = config == "lab"
        self.hoist = hoist
        grad = spike_grad(surrogate_name)
        self.fc1 = nn.Linear(784, hidden)
        self.lif1 = snn.Leaky(beta=beta, threshold=threshold, spike_grad=grad)
        self.fc2 = nn.Linear(hidden, 10)
        self.lif2 = snn.Leaky(beta=beta, threshold=threshold, spike_grad=grad)

    def input_currents(self, x):
        """The first layer's current for every step, or None when it is computed in the loop."""
        if not self.hoist:
            return None
        if self.bernoulli:
            # All steps' input spikes at once, then one (T*B, 784) x (784, hidden) product.
            return self.fc1((torch.rand((self.steps,) + x.shape) < x).float())
        return self.fc1(x)  # constant over time: once per sample

    def forward(self, x):
        """Output membrane and spikes of every step, each (T, B, 10)."""
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        cur = self.input_currents(x)
        mems, spikes = [], []
        for t in range(self.steps):
            if cur is not None:
                cur1 = cur[t] if self.bernoulli else cur
            elif self.bernoulli:
                cur1 = self.fc1((torch.rand_like(x) < x).float())
            else:
                cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            mems.append(mem2)
            spikes.append(spk2)
        return torch.stack(mems), torch.stack(spikes)


def make_loss(net, config):
    ce = nn.CrossEntropyLoss()
    mse = nn.MSELoss()

    def loss_fn(x, y):
        mems, spikes = net(x)
        if config == "tutorial5":
            return sum(ce(mems[t], y) for t in range(mems.shape[0]))
        return mse(spikes.mean(0), nn.functional.one_hot(y, 10).float())

    return loss_fn


@torch.no_grad()
def test_accuracy(net, directory):
    images, labels = common.load_mnist(directory, "test")
    correct = 0
    for start in range(0, len(labels), 1000):
        _, spikes = net(torch.from_numpy(images[start:start + 1000]))
        predicted = spikes.sum(0).argmax(1).numpy()
        correct += int((predicted == labels[start:start + 1000]).sum())
    return correct / len(labels)


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--compile", action="store_true", help="torch.compile the forward and loss")
    args = common.finish_args(p.parse_args())
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, labels = common.load_mnist(args.data, "train")
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    order = torch.from_numpy(common.batch_order(len(labels)))
    net = Net(args.config, args.hoist, args.surrogate)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    loss_fn = make_loss(net, args.config)
    if args.compile:
        loss_fn = torch.compile(loss_fn)

    def train_step(index):
        rows = order[index]
        loss = loss_fn(images[rows], labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # Under --compile the first step compiles the forward and backward graphs and the second
    # compiles them again: snnTorch keeps the membrane in a module buffer, which after one
    # step holds a tensor that requires grad, and that fails a dynamo guard. The warm-up
    # (3 steps by default) covers both; its wall time is reported as the compile time.
    started = time.perf_counter()
    for index in range(args.warmup):
        train_step(index)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    for index in range(args.warmup, args.warmup + args.batches):
        train_step(index)
    elapsed = time.perf_counter() - started
    accuracy = test_accuracy(net, args.data) if args.accuracy else None
    name = "snntorch-compile" if args.compile else "snntorch"
    common.report(name, args, elapsed, compile_s, accuracy)


if __name__ == "__main__":
    main()
