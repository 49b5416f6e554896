"""Plain JAX peer: the snnTorch peer's networks (same neuron equations, same loss, same
initialisation, biases included) written by hand as a `lax.scan` over time inside one
`jax.jit`-compiled training step, timed by the rule in peer_common.py.

  python jax_peer.py tutorial5 [--hoist] [--unroll N|full] --batches 30
  python jax_peer.py lab [--hoist] [--unroll N|full] --batches 30

--unroll is `lax.scan`'s unroll: N steps per loop iteration, `full` for no loop at all (one
straight-line graph that XLA can fuse across steps, at a longer compile).
--hoist as in snntorch_peer.py. Note that XLA may hoist the loop-invariant input projection
of tutorial 5 out of the scan (or, unrolled, merge the T copies) by itself; --hoist also
turns the T weight-gradient products of the backward pass into one.
"""
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import peer_common as common


def make_spike(name):
    """Heaviside forward, the surrogate's derivative backward (snnTorch's formulas and
    snnc's slopes: atan(alpha = 2), fast_sigmoid(slope = 2))."""
    if name == "atan":
        def surrogate(x):  # alpha / 2 / (1 + (pi / 2 * alpha * x)^2) with alpha = 2
            return 1.0 / (1.0 + (math.pi * x) ** 2)
    else:
        def surrogate(x):  # 1 / (1 + slope |x|)^2 with slope = 2
            return 1.0 / (1.0 + 2.0 * jnp.abs(x)) ** 2

    @jax.custom_vjp
    def spike(x):
        return (x > 0).astype(x.dtype)

    spike.defvjp(lambda x: (spike(x), x), lambda x, g: (g * surrogate(x),))
    return spike


def init_params(key, hidden):
    """torch.nn.Linear's initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases, so that every peer starts from the same distribution."""
    def linear(key, n_in, n_out):
        kw, kb = jax.random.split(key)
        bound = 1.0 / math.sqrt(n_in)
        return (jax.random.uniform(kw, (n_in, n_out), minval=-bound, maxval=bound),
                jax.random.uniform(kb, (n_out,), minval=-bound, maxval=bound))

    k1, k2 = jax.random.split(key)
    (w1, b1), (w2, b2) = linear(k1, 784, hidden), linear(k2, hidden, 10)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def make_forward(config, hoist, unroll, spike):
    hidden, steps, beta, threshold = common.CONFIGS[config]
    bernoulli = config == "lab"

    def leaky(mem, spk_prev, cur):
        # snnTorch's Leaky with subtractive reset: the reset is the previous step's spike,
        # detached from the graph, and the spike is taken on the updated membrane.
        mem = beta * mem + cur - jax.lax.stop_gradient(spk_prev) * threshold
        return mem, spike(mem - threshold)

    def forward(params, x, key):
        """Output membrane and spikes of every step, each (T, B, 10)."""
        w1, b1, w2, b2 = params["w1"], params["b1"], params["w2"], params["b2"]
        if bernoulli and hoist:
            # All steps' input spikes at once, then one (T*B, 784) x (784, hidden) product.
            spikes_in = jax.random.uniform(key, (steps,) + x.shape) < x
            xs = spikes_in.astype(x.dtype) @ w1 + b1
        elif bernoulli:
            xs = jax.random.split(key, steps)
        else:
            xs = None
        constant_cur = x @ w1 + b1 if hoist and not bernoulli else None

        def step(carry, xs_t):
            mem1, spk1, mem2, spk2 = carry
            if bernoulli and hoist:
                cur1 = xs_t
            elif bernoulli:
                cur1 = (jax.random.uniform(xs_t, x.shape) < x).astype(x.dtype) @ w1 + b1
            else:
                cur1 = constant_cur if hoist else x @ w1 + b1
            mem1, spk1 = leaky(mem1, spk1, cur1)
            mem2, spk2 = leaky(mem2, spk2, spk1 @ w2 + b2)
            return (mem1, spk1, mem2, spk2), (mem2, spk2)

        batch = x.shape[0]
        zeros_h, zeros_o = jnp.zeros((batch, hidden)), jnp.zeros((batch, 10))
        carry = (zeros_h, zeros_h, zeros_o, zeros_o)
        _, (mems, spikes) = jax.lax.scan(step, carry, xs, length=steps, unroll=unroll)
        return mems, spikes

    return forward


def make_loss(config, forward):
    def loss_fn(params, x, y, key):
        mems, spikes = forward(params, x, key)
        if config == "tutorial5":
            # Sum over steps of the mean cross-entropy of the output membrane.
            labels = jnp.broadcast_to(y, mems.shape[:2])
            return optax.softmax_cross_entropy_with_integer_labels(mems, labels).mean(axis=1).sum()
        return jnp.mean((spikes.mean(axis=0) - jax.nn.one_hot(y, 10)) ** 2)

    return loss_fn


def parse_unroll(text):
    return True if text == "full" else int(text)


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--unroll", default="1", help="steps per scan iteration, or 'full'")
    args = common.finish_args(p.parse_args())
    common.limit_cpus(args.threads)
    unroll = parse_unroll(args.unroll)
    images, labels = common.load_mnist(args.data, "train")
    order = common.batch_order(len(labels))
    key = jax.random.key(0)
    params = init_params(key, common.CONFIGS[args.config][0])
    optimizer = optax.adam(5e-4, b1=0.9, b2=0.999, eps=1e-8)  # torch.optim.Adam's defaults
    opt_state = optimizer.init(params)
    forward = make_forward(args.config, args.hoist, unroll, make_spike(args.surrogate))
    loss_fn = make_loss(args.config, forward)

    @jax.jit
    def train_step(params, opt_state, x, y, index):
        batch_key = jax.random.fold_in(key, index)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, batch_key)
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
        predict = jax.jit(lambda params, x, key: forward(params, x, key)[1].sum(0).argmax(1))
        predicted = np.concatenate([
            predict(params, test_images[i:i + 1000], jax.random.fold_in(key, 1_000_000 + i))
            for i in range(0, len(test_labels), 1000)])
        accuracy = float((predicted == test_labels).mean())
    common.report("jax", args, elapsed, compile_s, accuracy, [f"unroll={args.unroll}"])


if __name__ == "__main__":
    main()
