"""Spyx peer: the configurations built from Spyx's own layers (spyx.nn.LIF, spyx.axn
surrogates, spyx.data.rate_code for the hoisted Bernoulli input) on Flax NNX, timed by the
rule in peer_common.py.

  python spyx_peer.py tutorial5 [--hoist] [--unroll N|full] --batches 30
  python spyx_peer.py lab [--hoist] [--unroll N|full] --batches 30

Spyx 1.0 is built on Flax NNX (earlier releases used Haiku) and works with the pinned JAX.
Where it differs from the snnTorch and plain-JAX peers, that is Spyx's model, kept on purpose:
spyx.nn.LIF takes the spike from the membrane *before* the step's update, and its reset is not
detached from the graph; nnx.Linear initialises weights LeCun-normal and biases to zero. The
losses are the same as the other peers' (spyx.fn's losses add label smoothing and a sparsity
target, so they are not used).

The time loop is our own `lax.scan` over the Spyx layers rather than spyx.nn.run, because
run() has no `unroll`. The training step is the split/merge + `jax.jit` form that spyx.bench
uses, not nnx.jit: it has no per-call graph traversal in Python, so it is the faster of the
two. Only the weights and biases train; the LIF decays are NNX Params in Spyx and are kept
out of the gradient, as beta is fixed in the other peers and in snnc.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import spyx
from flax import nnx

import peer_common as common
from jax_peer import parse_unroll


def activation(name):
    if name == "atan":
        # snnTorch's atan(alpha = 2) derivative, 1 / (1 + (pi x)^2). spyx.axn.arctan(k) is
        # the same curve divided by pi, so it would scale every gradient.
        return spyx.axn.custom(bwd=lambda x: 1.0 / (1.0 + (jnp.pi * x) ** 2))
    return spyx.axn.superspike(k=2)  # superspike is the fast sigmoid, 1 / (1 + k |x|)^2


class Net(nnx.Module):
    def __init__(self, config, surrogate_name, rngs):
        hidden, _, beta, threshold = common.CONFIGS[config]
        act = activation(surrogate_name)
        self.fc1 = nnx.Linear(784, hidden, rngs=rngs)
        self.lif1 = spyx.nn.LIF((hidden,), beta=beta, threshold=threshold, activation=act, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, 10, rngs=rngs)
        self.lif2 = spyx.nn.LIF((10,), beta=beta, threshold=threshold, activation=act, rngs=rngs)


def make_forward(config, hoist, unroll):
    _, steps, _, _ = common.CONFIGS[config]
    bernoulli = config == "lab"
    encode = spyx.data.rate_code(steps, max_r=1.0)  # p = pixel value, as in snnc's bernoulli()

    def forward(net, x, key):
        """Output membrane and spikes of every step, each (T, B, 10)."""
        if bernoulli and hoist:
            # Spyx's encoder draws all steps at once, (B, T, 784); one product for all steps.
            spikes_in = jnp.swapaxes(encode(x[:, None, :], key), 0, 1).astype(x.dtype)
            xs = net.fc1(spikes_in)
        elif bernoulli:
            xs = jax.random.split(key, steps)
        else:
            xs = None
        constant_cur = net.fc1(x) if hoist and not bernoulli else None

        def step(carry, xs_t):
            v1, v2 = carry
            if bernoulli and hoist:
                cur1 = xs_t
            elif bernoulli:
                cur1 = net.fc1(jax.random.bernoulli(xs_t, x).astype(x.dtype))
            else:
                cur1 = constant_cur if hoist else net.fc1(x)
            spk1, v1 = net.lif1(cur1, v1)
            spk2, v2 = net.lif2(net.fc2(spk1), v2)
            return (v1, v2), (v2, spk2)

        batch = x.shape[0]
        carry = (net.lif1.initial_state(batch), net.lif2.initial_state(batch))
        _, (mems, spikes) = jax.lax.scan(step, carry, xs, length=steps, unroll=unroll)
        return mems, spikes

    return forward


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--unroll", default="1", help="steps per scan iteration, or 'full'")
    args = common.finish_args(p.parse_args())
    common.limit_cpus(args.threads)
    images, labels = common.load_mnist(args.data, "train")
    order = common.batch_order(len(labels))
    key = jax.random.key(0)
    net = Net(args.config, args.surrogate, nnx.Rngs(0))
    trainable = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("beta")))
    graphdef, params, rest = nnx.split(net, trainable, ...)
    optimizer = optax.adam(5e-4, b1=0.9, b2=0.999, eps=1e-8)
    opt_state = optimizer.init(params)
    forward = make_forward(args.config, args.hoist, parse_unroll(args.unroll))

    def loss_fn(params, x, y, key):
        mems, spikes = forward(nnx.merge(graphdef, params, rest), x, key)
        if args.config == "tutorial5":
            labels = jnp.broadcast_to(y, mems.shape[:2])
            return optax.softmax_cross_entropy_with_integer_labels(mems, labels).mean(axis=1).sum()
        return jnp.mean((spikes.mean(axis=0) - jax.nn.one_hot(y, 10)) ** 2)

    @jax.jit
    def train_step(params, opt_state, x, y, index):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, jax.random.fold_in(key, index))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def run(first, last, params, opt_state):
        for index in range(first, last):
            rows = order[index]
            params, opt_state, _ = train_step(params, opt_state, images[rows], labels[rows], index)
        # Dispatch is asynchronous: wait for the last step before reading the clock.
        return jax.block_until_ready((params, opt_state))

    started = time.perf_counter()
    params, opt_state = run(0, args.warmup, params, opt_state)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    params, opt_state = run(args.warmup, args.warmup + args.batches, params, opt_state)
    elapsed = time.perf_counter() - started
    accuracy = None
    if args.accuracy:
        test_images, test_labels = common.load_mnist(args.data, "test")

        @jax.jit
        def predict(params, x, key):
            return forward(nnx.merge(graphdef, params, rest), x, key)[1].sum(0).argmax(1)

        predicted = np.concatenate([
            predict(params, test_images[i:i + 1000], jax.random.fold_in(key, 1_000_000 + i))
            for i in range(0, len(test_labels), 1000)])
        accuracy = float((predicted == test_labels).mean())
    common.report("spyx", args, elapsed, compile_s, accuracy, [f"unroll={args.unroll}"])


if __name__ == "__main__":
    main()
