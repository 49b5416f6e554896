"""mlGeNN peer for seeds/002: the Yin-Yang EventProp network (Fontanini et al. 2024) trained
with mlGeNN's EventPropCompiler on GeNN's single-threaded CPU back end, timed.

  /tmp/mlgenn-venv/bin/python eventprop_yinyang_mlgenn.py [--epochs N] [--seed S]
      [--test-seed S] [--train N] [--test N] [--batch B] [--dt MS] [--lr LR] [--ttfs-alpha A]
      [--no-optimize] [--build-dir DIR]

Neither pygenn nor ml_genn is on PyPI: they are built from source (GeNN 5.4.0, mlGeNN tag
ml_genn_2_4_0); requirements-mlgenn.txt says how and pins the rest. Prints, on stdout:

  build_seconds B                  (mlGeNN compile + GeNN code generation + g++ + load,
                                    always cold: the generated-code folder is removed first)
  epoch E train_samples_per_second X test_accuracy A   (one line per epoch)

X = training examples / seconds of time.perf_counter() from the start to the end of the
epoch's training batches only (no model build, no test pass). A is the first-spike
accuracy on the test set after that epoch. GeNN writes and compiles its generated C++ under
--build-dir (default /tmp/snnc-mlgenn-build), not next to this script.

The network, and how it maps to mlGeNN 2.4 (read from ml_genn/compilers/event_prop_compiler.py,
neurons/leaky_integrate_fire.py, synapses/exponential.py, readouts/first_spike_time.py)
- Data: Kriener et al.'s Yin-Yang generator (as in their yin_yang_data_set and mlGeNN's
  utils.data.generate_yin_yang_dataset): r_small 0.1, r_big 0.5, a class drawn uniformly,
  then (x, y) drawn uniformly in [0, 1]^2 until inside the big circle and of that class.
  5000 train points (--seed, default 42), 1000 test points (--test-seed, default 40: the
  seeds of Kriener et al.'s train and test sets).
  Channels: bias, x, y, 1-x, 1-y; channel value v spikes once at t = 20 ms * v (bias at 0).
- 5-40-25-13-3 LIF: tau_mem 20 ms, tau_syn 5 ms, threshold 1, reset to 0 (absolute,
  relative_reset=False), no refractory period (tau_refrac=None), no integration switch-off.
  Dense all-to-all weights U[1,3], U[0.2,1], U[0,1], U[0,1]. T = 30 ms, dt 0.1 ms (300 steps).
- Loss: SparseCategoricalCrossentropy on the FirstSpikeTime readout of the output layer,
  softmax temperature 0.5 ms: cross-entropy of softmax(-t_first / 0.5 ms). Adam(5e-3, 0.9,
  0.999, 1e-8), batch 32 (emulated, see 5). Prediction: argmax of -t_first, i.e. the
  output that fired first.

How this mlGeNN network differs from ours (seeds/002)
1. Time is discrete in GeNN and the forward pass is a clock-driven dt = 0.1 ms simulation:
   spike times, t_first and the EventProp jumps all sit on the dt grid. mlGeNN's update per
   step is V <- a V + (1 - a) I with a = exp(-dt / tau_mem) (scale_i=True, the exact
   solution for constant I over the step) and the synapse injects I = i * (tau_syn / dt)
   (1 - exp(-dt / tau_syn)) (the step's mean of the decaying current, 0.990 i here) and then
   i <- i exp(-dt / tau_syn); a spike adds w to i in the step after the one it was emitted
   in (GeNN propagates a step's spikes in the next step's synapse update). Threshold is
   tested once per step (V >= 1), so a crossing is detected up to one step late and not
   interpolated.
2. Input spike times are quantised: a SpikeInput neuron fires on the first step with
   t >= its spike time, so a spike at 3.14 ms is delivered at 3.2 ms.
3. Loss: mlGeNN's first-spike cross-entropy. The default ttfs_alpha (0.01) adds a term
   alpha / (1.01 T - t_true) on the true class's first spike and, when the true output does
   not fire, a "phantom" jump of alpha / (1e-4 T^2) / batch at the start of the backward
   pass (t = T);
   --ttfs-alpha defaults to 0 here to leave the plain cross-entropy (no phantom spikes, so an
   output that never fires gets no gradient from the loss). Outputs that do not fire have
   t_first = -FLT_MAX in the softmax, i.e. probability 0.
4. Prediction ties: argmax of -t_first takes the lowest index among outputs that fire in the
   same step; an example with no output spike at all is predicted as class 0.
5. Batches: GeNN's single_threaded_cpu back end refuses any batch size but 1 ("The
   single-threaded CPU backend only supports simulations with a batch size of 1", raised by
   GeNN 5.4's code generator). So the GeNN model runs one example at a time, and batch 32 is
   emulated: mlGeNN's own GradientLearn callback (Adam, which then zeroes Gradient) is
   re-filtered to fire every 32 examples instead of after each, so Gradient accumulates 32
   examples' backward passes, and AccumulatingAdam makes Adam's bias correction count
   updates, not examples. Gradient is the SUM over the 32 examples (mlGeNN divides by its
   batch size, here 1), not the mean: Adam is invariant to that scale up to its epsilon
   (1e-8). --batch 1 is stock mlGeNN on the CPU (Adam after every example).
6. Pipelining: mlGeNN runs the backward pass of example k during the forward pass of
   example k+1, and its trial counter restarts at each epoch, so an epoch makes
   floor(4999 / 32) = 156 Adam steps and the last 8 examples of each epoch (5000 = 156 * 32
   + 8) contribute no weight update.
7. mlGeNN drives every 0.1 ms step from Python (one GeNN step_time call and callback
   dispatch per step, 300 per example): that interpreter overhead is in the timing.
8. Single precision ("float") throughout; generated code built with -O3 -ffast-math
   (GeNN's optimize_code preference; --no-optimize builds it without -O, GeNN's default).
9. The weight initialisation uses GeNN's RNG seeded with --seed (not the same numbers as
   ours for the same seed); the training order is shuffled with numpy's global RNG.
10. The test pass each epoch runs through the same EventProp model (its forward pass; no
   weight update), as mlGeNN's train(validation_x=...) does it; it is not timed.
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np

# One core for numpy too; GeNN's single_threaded_cpu back end uses one thread.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from ml_genn import InputLayer, Layer, SequentialNetwork  # noqa: E402
from ml_genn.callbacks import Callback, CustomUpdateOnBatchEnd  # noqa: E402
from ml_genn.compilers import EventPropCompiler  # noqa: E402
from ml_genn.compilers.event_prop_compiler import default_params  # noqa: E402
from ml_genn.connectivity import Dense  # noqa: E402
from ml_genn.initializers import Uniform  # noqa: E402
from ml_genn.losses import SparseCategoricalCrossentropy  # noqa: E402
from ml_genn.neurons import LeakyIntegrateFire, SpikeInput  # noqa: E402
from ml_genn.optimisers import Adam  # noqa: E402
from ml_genn.synapses import Exponential  # noqa: E402
from ml_genn.utils.data import preprocess_spikes  # noqa: E402

T_MS = 30.0
T_MAX_INPUT_MS = 20.0
TAU_MEM = 20.0
TAU_SYN = 5.0
HIDDEN = (40, 25, 13)
INIT = ((1.0, 3.0), (0.2, 1.0), (0.0, 1.0), (0.0, 1.0))
NUM_IN, NUM_OUT = 5, 3


def yin_yang(size, seed, r_small=0.1, r_big=0.5):
    """Kriener et al.'s generator: returns (values [size, 4] = x, y, 1-x, 1-y; labels)."""
    rng = np.random.RandomState(seed)

    def which_class(x, y):
        d_right = np.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
        d_left = np.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
        if d_right < r_small or d_left < r_small:
            return 2  # dot
        is_yin = (d_right <= r_small or r_small < d_left <= 0.5 * r_big
                  or (y > r_big and d_right > 0.5 * r_big))
        return int(is_yin)

    values = np.empty((size, 4))
    labels = np.empty(size, dtype=np.int64)
    for i in range(size):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if np.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                continue
            if which_class(x, y) == goal:
                break
        values[i] = (x, y, 1.0 - x, 1.0 - y)
        labels[i] = goal
    return values, labels


def encode(values):
    """One spike per channel: bias at 0 ms, value v at 20 ms * v."""
    ids = np.arange(NUM_IN)
    return [preprocess_spikes(np.concatenate(([0.0], v)) * T_MAX_INPUT_MS, ids, NUM_IN)
            for v in values]


class AccumulatingAdam(Adam):
    """Adam whose bias correction counts weight updates, not examples (see AccumulateLearn)."""

    updates = 0

    def set_step(self, genn_cu, step):
        super().set_step(genn_cu, self.updates)


class AccumulateLearn(Callback):
    """Counts the Adam updates that mlGeNN's GradientLearn callback (re-filtered in main() to
    fire every `every` examples) has made; runs after it, as user callbacks follow mlGeNN's."""

    def __init__(self, adam, every):
        self.adam, self.every = adam, every

    def on_batch_end(self, batch, metrics):
        if batch > 0 and batch % self.every == 0:
            self.adam.updates += 1


class EpochTimer(Callback):
    """Training callbacks: perf_counter at the start and end of each epoch's batches."""

    def __init__(self):
        self.seconds = {}

    def on_epoch_begin(self, epoch):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, metrics):
        self.seconds[epoch] = time.perf_counter() - self._start


class TestReport(Callback):
    """Validation callbacks: print the epoch's line once its test pass has run."""

    def __init__(self, timer, output, n_train):
        self.timer, self.output, self.n_train = timer, output, n_train

    def on_epoch_end(self, epoch, metrics):
        seconds = self.timer.seconds[epoch]
        print(f"epoch {epoch + 1} train_samples_per_second {self.n_train / seconds:.1f} "
              f"test_accuracy {metrics[self.output].result:.4f}", flush=True)
        print(f"  epoch {epoch + 1}: {seconds:.2f} s training", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=42, help="train set, weights, shuffling")
    p.add_argument("--test-seed", type=int, default=40)
    p.add_argument("--train", type=int, default=5000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dt", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--ttfs-alpha", type=float, default=0.0,
                   help="mlGeNN's early-spike/phantom-spike term (its default is 0.01)")
    p.add_argument("--no-optimize", action="store_true",
                   help="build GeNN's code without -O3 -ffast-math (GeNN's default)")
    p.add_argument("--build-dir", default="/tmp/snnc-mlgenn-build")
    args = p.parse_args()

    np.random.seed(args.seed)  # mlGeNN shuffles with numpy's global RNG
    x_train, y_train = yin_yang(args.train, args.seed)
    x_test, y_test = yin_yang(args.test, args.test_seed)
    s_train, s_test = encode(x_train), encode(x_test)

    network = SequentialNetwork(default_params)  # LIF/Exponential with scale_i, abs. reset
    with network:
        inp = InputLayer(SpikeInput(max_spikes=NUM_IN), NUM_IN)
        sizes = HIDDEN + (NUM_OUT,)
        for i, (n, (lo, hi)) in enumerate(zip(sizes, INIT)):
            last = i == len(sizes) - 1
            out = Layer(Dense(Uniform(lo, hi)),
                        LeakyIntegrateFire(v_thresh=1.0, v_reset=0.0, tau_mem=TAU_MEM,
                                           tau_refrac=None,
                                           readout="first_spike_time" if last else None),
                        n, Exponential(TAU_SYN))

    # GeNN skips code generation and g++ when its code folder is up to date: remove it so
    # that build_seconds is always a cold build.
    os.makedirs(args.build_dir, exist_ok=True)
    os.chdir(args.build_dir)
    shutil.rmtree("yinyang_eventpropEventPropCompiler_CODE", ignore_errors=True)
    steps = int(round(T_MS / args.dt))
    t0 = time.perf_counter()
    adam = AccumulatingAdam(args.lr, 0.9, 0.999, 1e-8)
    compiler = EventPropCompiler(
        example_timesteps=steps, losses=SparseCategoricalCrossentropy(),
        optimiser=adam, batch_size=1, dt=args.dt,
        softmax_temperature=0.5, ttfs_alpha=args.ttfs_alpha, rng_seed=args.seed,
        backend="single_threaded_cpu", optimize_code=not args.no_optimize)
    compiled = compiler.compile(network, name="yinyang_eventprop")
    # GeNN batch 1 (all the CPU back end runs): mlGeNN's "batch" is one example, and it
    # applies Adam after each (GradientLearn at the end of every batch but the first, which
    # then zeroes Gradient). Fire it every args.batch examples instead, so that Gradient sums
    # args.batch examples' backward passes between Adam steps.
    learn = [c for c in compiled.base_train_callbacks
             if isinstance(c, CustomUpdateOnBatchEnd) and c.name == "GradientLearn"]
    assert len(learn) == 1, "mlGeNN's GradientLearn callback not found"
    learn[0].filter_fn = lambda b, k=args.batch: b > 0 and b % k == 0
    # compiled's __enter__ generates the code, runs make + g++ and loads the model; make's
    # "Entering directory" lines go to stderr so that stdout has only the lines above.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        compiled.__enter__()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    try:
        build_s = time.perf_counter() - t0
        print(f"build_seconds {build_s:.2f}", flush=True)
        timer = EpochTimer()
        compiled.train({inp: s_train}, {out: y_train}, num_epochs=args.epochs,
                       shuffle=True, callbacks=[AccumulateLearn(adam, args.batch), timer],
                       validation_callbacks=[TestReport(timer, out, args.train)],
                       validation_x={inp: s_test}, validation_y={out: y_test})
    finally:
        compiled.__exit__(None, None, None)

if __name__ == "__main__":
    main()
