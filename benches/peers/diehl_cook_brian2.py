"""Brian2 peer for the Diehl & Cook 2015 unsupervised STDP network: the network of
models/diehl_cook_<N>.snn (neurons DiehlCookExc / DiehlCookInh of stdlib/neurons.snn, synapse
DiehlCookStdp of stdlib/synapses.snn; REFERENCE.md section B) written with the authors'
equations in Brian2, trained on the first K MNIST training examples and timed.

  .venv-brian2/bin/python diehl_cook_brian2.py [--target cpp_standalone|cython|numpy]
      [--neurons N] [--examples K] [--traces neuron|synapse] [--build-dir DIR] [--seed S]

(setup.sh makes .venv-brian2; benches/diehl_cook.sh runs this against snnc.) MNIST comes from
$SNNC_MNIST_DIR (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]). It prints one
line for benches/diehl_cook.sh to parse; the rest (compile time, presentations, retries,
excitatory spikes per presentation, CPU time) goes to stderr:

  brian2 <target> N=<n> examples=<k> seconds=<s> examples_per_s=<x>

How the snnc model maps to Brian2
- dt 0.5 ms; an example is 350 ms of input and 150 ms of rest (rates 0): 1000 steps.
- `pixels[784] = poisson(image * intensity * 31.875 Hz)` (pixel / 8 * intensity Hz) is a
  NeuronGroup with `rand() < rates * dt` as threshold, what PoissonGroup does (a NeuronGroup so
  that it can carry the `pre` trace and, in standalone mode, fall silent after 350 ms).
- DiehlCookExc: `dv/dt = ((v_rest - v) + ge (0 mV - v) + gi (-100 mV - v)) / (100 ms)`, ge, gi
  and theta decaying with 1 ms, 2 ms and 1e7 ms; spike when `v > theta - 20 mV + v_thresh`;
  reset `v = v_reset; theta += 0.05 mV`; v held while refractory (`(unless refractory)`); v
  starts at -105 mV, theta at 20 mV, and every state runs on from one example to the next
  (snnc: `persistent`). DiehlCookInh likewise (v_rest -60, v_reset -45, v_thresh -40 mV, E_inh
  -85 mV, tau_m 10 ms, v from -100 mV).
- Integration as snnc's IR does it (`snnc emit ir`): forward Euler for v, exact decays for
  ge, gi, theta and the traces. Brian2 has one method per group, so the groups use 'euler'
  and each decay is written `dx/dt = -x * k` with k = (1 - exp(-dt / tau)) / dt, which forward
  Euler turns into x <- x exp(-dt / tau). (Brian2's own choice, exponential Euler, would
  integrate v differently; the authors' Brian 1 script, a nonlinear system there, and its
  Brian2 ports (method='euler') take forward Euler steps for the decays too.)
- Refractory 5 ms + dt and 2 ms + dt: snnc holds v for 10 (4) steps after the spike step;
  Brian2 releases a neuron once `timestep(t - lastspike) >= timestep(refractory)`, one step
  earlier than snnc for the same period.
- pixels -> exc.exc: dense, w0 uniform(0.003, 0.303), DiehlCookStdp: on pre `ge += w; pre = 1;
  w = clip(w - 1e-4 post1, 0, 1)`, on post `w = clip(w + 1e-2 pre post2, 0, 1); post1 = 1;
  post2 = 1` (post2 read before it is set: the authors' post2before); traces pre 20 ms, post1
  20 ms, post2 40 ms. --traces neuron (default) keeps `pre` per input neuron and post1/post2
  per excitatory neuron, decayed every step, as snnc stores them; --traces synapse is the
  authors' Brian2 port, one event-driven copy per synapse (same weights to 1e-15, slower).
- exc -> inh.exc one_to_one 10.4 (`ge_post += 10.4`); inh -> exc.inh all_to_all_but_self 17.0,
  `feedback` (one step late).
- Order within a step: snnc's (docs/language.md), set with each object's `when`/`order` (see
  schedule()): input spikes; the excitatory layer (jumps from this step's input spikes and the
  previous step's inhibitory spikes, then its step and threshold); the inhibitory layer (jumps
  from this step's excitatory spikes, ...); then plasticity: on-pre before on-post, weights
  delivered before they change. Brian2's default schedule would deliver every spike a step
  later than snnc does.
- `every sample { intensity = 2; normalize(weights(pixels, exc), total = 78) }`: before each
  example, not before a retry (snnc; the authors' script normalises before every
  presentation). `retry when sum(count(exc)) < 5 max 20 { intensity += 1 }`: spikes counted
  over the whole 500 ms (snnc's count includes the rest steps; the authors count the 350 ms
  only), learning during every presentation.

Left different from snnc: the random numbers (Poisson spikes, initial weights: other streams,
so other spike trains and retry counts; both sides simulate every presentation, and Brian2's
counts go to stderr), the float type (Brian2 float64; snnc runs f32 by default), and the order of
the training examples (snnc shuffles the K examples every epoch; here they run in file
order).

Timing (examples/s = K / seconds; every presentation, retries included, is simulated):
- cpp_standalone (one thread, no OpenMP): the whole training loop runs inside the standalone
  program, so it is compiled once and the timed part is the `device.run()` of the built binary
  (its start-up, synapse creation and final writes included; compilation excluded, reported on
  stderr). The per-example logic is Brian2 code: a one-neuron controller group, on a 500 ms
  clock (`run_regularly`), counts the excitatory spikes (a Synapses exc -> controller), decides
  retry or next example, and sets the intensity and example index; the input group reads the
  image from a 2-D TimedArray indexed by that example index and is silent in the last 300 steps
  of each 1000. Normalisation is a summed variable (`wsum_post = w (summed)`) whose updater is
  moved onto the same 500 ms clock (Brian2 would otherwise sum all N x 784 weights every step),
  then a `run_regularly` on the synapses. The run is given room for 21 presentations per
  example and stops itself (a one-line C++ Function that sets Network::_globally_stopped) when
  the example index reaches K.
- cython and numpy (runtime mode): one Python loop as most users write it (and as the authors'
  script does): per presentation, numpy normalisation of S.w (new examples only), set the
  rates, `net.run(350 ms)`, rates 0, `net.run(150 ms)`, read the spike count. Compilation
  happens in an untimed one-step warm-up run (the network is restored afterwards; Cython's
  cache makes later runs skip it); the timed part is the whole loop. Brian2's runtime mode
  pays Python overhead for every object in every step, whatever the network size.
"""
import argparse
import atexit
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as common  # noqa: E402

PRESENT_STEPS = 700  # 350 ms at dt 0.5 ms
TOTAL_STEPS = 1000   # + 150 ms rest
MAX_RETRIES = 20
MIN_SPIKES = 5       # retry when the excitatory layer fired fewer


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build(b2, n, traces, standalone, images):
    """The network. Returns a dict of its objects (all are collected into one Network)."""
    ms, mV = b2.ms, b2.mV
    dt = b2.defaultclock.dt

    def decay_rate(tau):
        # dx/dt = -x * rate under forward Euler is x <- x * exp(-dt / tau): snnc's exact decay.
        return -np.expm1(-float(dt / tau)) / dt

    ns = dict(v_rest_e=-65 * mV, v_reset_e=-65 * mV, v_thresh_e=-52 * mV, offset=20 * mV,
              v_rest_i=-60 * mV, v_reset_i=-45 * mV, v_thresh_i=-40 * mV, theta_plus=0.05 * mV,
              k_ge=decay_rate(1 * ms), k_gi=decay_rate(2 * ms), k_theta=decay_rate(1e7 * ms),
              k_pre=decay_rate(20 * ms), k_post1=decay_rate(20 * ms), k_post2=decay_rate(40 * ms),
              tc_pre=20 * ms, tc_post1=20 * ms, tc_post2=40 * ms,
              post1_step=np.exp(-float(dt / (20 * ms))),
              nu_pre=1e-4, nu_post=1e-2, wmax=1.0)
    neuron_traces = traces == "neuron"
    objs = {}
    if standalone:
        # Row e of the 2-D TimedArray is example e's image: img(e * ms, i).
        ns["img"] = b2.TimedArray(images, dt=1 * ms, name="images")

    # Input: Poisson spikes, rate image * intensity * 31.875 Hz (= pixel / 8 * intensity).
    inp_eqs = "rates : Hz\n"
    if neuron_traces:
        inp_eqs += "dpre/dt = -pre * k_pre : 1\n"
    if standalone:
        # Example index and intensity come from the controller; no input in the rest steps.
        inp_eqs += "idx : integer (linked)\nintensity : 1 (linked)\n"
        threshold = f"t_in_timesteps % {TOTAL_STEPS} < {PRESENT_STEPS} and rand() < rates * dt"
    else:
        threshold = "rand() < rates * dt"
    inp = b2.NeuronGroup(784, inp_eqs, threshold=threshold, method="euler", namespace=ns, name="pixels")
    objs["inp"] = inp

    exc_eqs = """
        dv/dt = ((v_rest_e - v) + ge * (0 * mV - v) + gi * (-100 * mV - v)) / (100 * ms) : volt (unless refractory)
        dge/dt = -ge * k_ge : 1
        dgi/dt = -gi * k_gi : 1
        dtheta/dt = -theta * k_theta : volt
    """
    exc_reset = "v = v_reset_e; theta += theta_plus"
    if neuron_traces:
        exc_eqs += "dpost1/dt = -post1 * k_post1 : 1\ndpost2/dt = -post2 * k_post2 : 1\n"
        # In the resets slot, after both synaptic pathways of the step have read post2.
        exc_reset += "; post1 = 1; post2 = 1"
    if standalone:
        exc_eqs += "wsum : 1\nnewex : 1 (linked)\nscale : 1\n"
    # Refractory t_ref + dt: Brian2 integrates again 10 steps after the spike step, snnc 11.
    exc = b2.NeuronGroup(n, exc_eqs, threshold="v > theta - offset + v_thresh_e", reset=exc_reset,
                         refractory=5 * ms + dt, method="euler", namespace=ns, name="exc")
    exc.v = -105 * mV
    exc.theta = 20 * mV
    objs["exc"] = exc

    inh = b2.NeuronGroup(n, """
        dv/dt = ((v_rest_i - v) + ge * (0 * mV - v) + gi * (-85 * mV - v)) / (10 * ms) : volt (unless refractory)
        dge/dt = -ge * k_ge : 1
        dgi/dt = -gi * k_gi : 1
    """, threshold="v > v_thresh_i", reset="v = v_reset_i", refractory=2 * ms + dt,
        method="euler", namespace=ns, name="inh")
    inh.v = -100 * mV
    objs["inh"] = inh

    if neuron_traces:
        model = "w : 1"
        # This pathway runs before the excitatory layer's step (see schedule()), so post1 gets
        # the step's decay here. pre = 1 here, not in a reset, so that a post spike of the
        # same step, whose pathway runs later, sees it.
        on_pre = "ge_post += w; pre_pre = 1; w = clip(w - nu_pre * post1_post * post1_step, 0, wmax)"
        on_post = "w = clip(w + nu_post * pre_pre * post2_post, 0, wmax)"
    else:
        model = """w : 1
            dpre/dt = -pre / tc_pre : 1 (event-driven)
            dpost1/dt = -post1 / tc_post1 : 1 (event-driven)
            dpost2/dt = -post2 / tc_post2 : 1 (event-driven)"""
        on_pre = "ge_post += w; pre = 1; w = clip(w - nu_pre * post1, 0, wmax)"
        on_post = "post2before = post2; w = clip(w + nu_post * pre * post2before, 0, wmax); post1 = 1; post2 = 1"
    if standalone:
        model += "\nwsum_post = w : 1 (summed)"
    syn = b2.Synapses(inp, exc, model, on_pre=on_pre, on_post=on_post, namespace=ns, name="input_exc")
    syn.connect()
    syn.w = "(rand() + 0.01) * 0.3"  # uniform(0.003, 0.303)
    objs["syn"] = syn

    e2i = b2.Synapses(exc, inh, on_pre="ge_post += 10.4", name="exc_inh")
    e2i.connect(j="i")
    i2e = b2.Synapses(inh, exc, on_pre="gi_post += 17.0", name="inh_exc")
    i2e.connect(condition="i != j")
    objs["e2i"], objs["i2e"] = e2i, i2e

    if standalone:
        add_controller(b2, objs, n, images)
    schedule(objs)
    return objs


def schedule(objs):
    """snnc's order within a step (docs/language.md): the inputs' spikes; the excitatory layer
    (jumps from this step's input spikes and the previous step's inhibitory spikes, Euler step,
    threshold); the inhibitory layer (jumps from this step's excitatory spikes, ...); then the
    plasticity (traces decayed, on-pre, on-post). Brian2's default (all state updates, then all
    thresholds, then all synapses) would deliver every spike one step later."""
    inp, exc, inh, syn = objs["inp"], objs["exc"], objs["inh"], objs["syn"]
    for obj, when, order in [
        (inp.state_updater, "start", -5),            # the pre trace's decay
        (inp.thresholder["spike"], "start", 0),      # this step's input spikes
        (syn.pre, "before_groups", 0),               # ge += w, pre = 1, depression
        (objs["i2e"].pre, "before_groups", 1),       # the previous step's inhibitory spikes
        (exc.state_updater, "groups", 0),
        (exc.thresholder["spike"], "thresholds", 0),
        (objs["e2i"].pre, "after_thresholds", 0),    # this step's excitatory spikes
        (inh.state_updater, "after_thresholds", 1),
        (inh.thresholder["spike"], "after_thresholds", 2),
        (syn.post, "synapses", 0),                   # potentiation, post2 before it is set
        (exc.resetter["spike"], "resets", 0),        # v, theta, post1 = post2 = 1
        (inh.resetter["spike"], "resets", 1),
    ]:
        obj.when, obj.order = when, order


def add_controller(b2, objs, n, images):
    """The per-example logic as Brian2 code on a 500 ms clock (see the module docstring)."""
    k = len(images)
    inp, exc, syn = objs["inp"], objs["exc"], objs["syn"]
    period = TOTAL_STEPS * b2.defaultclock.dt

    @b2.implementation("cpp", """
        double stop_if(bool c) {
            if (c) Network::_globally_stopped = true;
            return c ? 1.0 : 0.0;
        }""", headers=['"network.h"'])
    @b2.check_units(c=bool, result=1)
    def stop_if(c):
        raise NotImplementedError("standalone only")
    stop_if.stateless = False

    ctrl = b2.NeuronGroup(1, """
        idx : integer
        attempt : integer
        count : integer
        presentations : integer
        nspikes : integer
        intensity : 1
        newex : 1
        stopped : 1
    """, namespace={"stop_if": stop_if}, name="controller")
    ctrl.idx = -1
    objs["ctrl"] = ctrl
    counter = b2.Synapses(exc, ctrl, on_pre="count_post += 1; nspikes_post += 1", name="spike_counter")
    counter.connect()
    objs["counter"] = counter
    # At every 500 ms boundary (t = 0 starts the first example): retry while the excitatory
    # layer fired fewer than 5 spikes (at most 20 times), else the next example at intensity 2.
    ctrl.run_regularly(f"""
        started = int(idx >= 0)
        retry = started * int(count < {MIN_SPIKES}) * int(attempt < {MAX_RETRIES})
        intensity = retry * (intensity + 1) + (1 - retry) * 2
        attempt = retry * (attempt + 1)
        idx = idx + 1 - retry
        newex = 1 - retry
        count = 0
        presentations = presentations + int(idx < {k})
        stopped = stop_if(idx >= {k})
    """, dt=period, when="start", order=-10, name="control")

    inp.idx = b2.linked_var(ctrl, "idx", index=np.zeros(784, dtype=int))
    inp.intensity = b2.linked_var(ctrl, "intensity", index=np.zeros(784, dtype=int))
    inp.run_regularly("rates = img(idx * ms, i) * intensity * 31.875 * Hz",
                      dt=period, when="start", order=-9, name="set_rates")

    exc.newex = b2.linked_var(ctrl, "newex", index=np.zeros(n, dtype=int))
    # Column sums, only at the 500 ms boundaries, then the scale, then the weights: all before
    # the step's first spike is delivered.
    updater = syn.summed_updaters["wsum_post"]
    updater._clock = b2.Clock(dt=period, name="normalise_clock")
    updater.when, updater.order = "start", -8
    exc.run_regularly("scale = newex * 78 / wsum + (1 - newex)", dt=period, when="start", order=-7,
                      name="normalise_scale")
    syn.run_regularly("w = w * scale_post", dt=period, when="start", order=-6, name="normalise_weights")


def run_standalone(b2, args, images):
    directory = args.build_dir or tempfile.mkdtemp(prefix=f"dc_brian2_{args.neurons}_")
    if not args.build_dir:
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    b2.set_device("cpp_standalone", directory=directory, build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = 0  # one thread
    b2.defaultclock.dt = 0.5 * b2.ms
    b2.seed(args.seed)
    objs = build(b2, args.neurons, args.traces, True, images)
    net = b2.Network(list(objs.values()))
    k = len(images)
    # Room for every example to use all its retries, plus the step that stops the run.
    net.run((k * (MAX_RETRIES + 1) * TOTAL_STEPS + 1) * b2.defaultclock.dt)
    start = time.perf_counter()
    b2.device.build(directory=directory, compile=True, run=False, clean=True)
    compile_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    b2.device.run(directory=directory, with_output=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    ctrl = objs["ctrl"]
    presentations, spikes = int(ctrl.presentations[0]), int(ctrl.nspikes[0])
    # Brian2's own loop time is CPU time (std::clock), as is cpu_s: on a busy machine they
    # show what the wall time would be without the wait for a core.
    log(f"compile {compile_s:.1f} s (excluded), simulated {presentations} presentations "
        f"({presentations - k} retries, {spikes / presentations:.1f} excitatory spikes each); "
        f"program {seconds:.2f} s wall, {cpu_s:.2f} s CPU, of which the network loop "
        f"{b2.device._last_run_time:.2f} s CPU; build dir {directory}")
    assert int(ctrl.idx[0]) == k, f"stopped at example {int(ctrl.idx[0])}, not {k}"
    return seconds, objs


def run_runtime(b2, args, images):
    b2.prefs.codegen.target = args.target
    b2.defaultclock.dt = 0.5 * b2.ms
    b2.seed(args.seed)
    objs = build(b2, args.neurons, args.traces, False, images)
    mon = b2.SpikeMonitor(objs["exc"], record=False, name="exc_count")
    net = b2.Network(list(objs.values()) + [mon])
    inp, syn = objs["inp"], objs["syn"]
    post = np.asarray(syn.j[:])
    n = args.neurons
    ms, Hz = b2.ms, b2.Hz

    # Warm-up: one step compiles every code object; then back to the initial state.
    start = time.perf_counter()
    net.store("init")
    net.run(b2.defaultclock.dt)
    net.restore("init")
    compile_s = time.perf_counter() - start

    start, cpu = time.perf_counter(), time.process_time()
    presentations = 0
    for x in images:
        intensity = 2.0
        # (Local names that differ from the model's: net.run resolves names in this frame.)
        weights = np.asarray(syn.w[:])
        syn.w[:] = weights * (78.0 / np.bincount(post, weights=weights, minlength=n))[post]
        for attempt in range(MAX_RETRIES + 1):
            before = mon.num_spikes
            inp.rates = x * intensity * 31.875 * Hz
            net.run(350 * ms)
            inp.rates = 0 * Hz
            net.run(150 * ms)
            presentations += 1
            if mon.num_spikes - before >= MIN_SPIKES:
                break
            intensity += 1
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    log(f"warm-up (compile) {compile_s:.1f} s (excluded), simulated {presentations} presentations "
        f"({presentations - len(images)} retries, {mon.num_spikes / presentations:.1f} excitatory "
        f"spikes each); loop {seconds:.2f} s wall, {cpu_s:.2f} s CPU")
    return seconds, objs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=["cpp_standalone", "cython", "numpy"], default="cpp_standalone")
    p.add_argument("--neurons", "-n", type=int, default=400, help="excitatory (and inhibitory) neurons")
    p.add_argument("--examples", "-k", type=int, default=200, help="first K training examples")
    p.add_argument("--traces", choices=["neuron", "synapse"], default="neuron")
    p.add_argument("--build-dir", help="cpp_standalone project folder, kept (default: a temporary one, removed)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", default=os.environ.get("SNNC_MNIST_DIR", "data/mnist"))
    args = p.parse_args()

    import brian2 as b2
    b2.BrianLogger.log_level_warn()
    images = common.load_mnist(args.data, "train", limit=args.examples)[0].astype(np.float64)
    if args.target == "cpp_standalone":
        seconds, objs = run_standalone(b2, args, images)
    else:
        seconds, objs = run_runtime(b2, args, images)
    theta = np.asarray(objs["exc"].theta[:]) / float(b2.mV)
    w = np.asarray(objs["syn"].w[:])
    log(f"after training: mean theta {theta.mean():.3f} mV, mean w {w.mean():.4f}, "
        f"peak RSS {common.peak_rss_mib():.0f} MiB (this process)")
    k = args.examples
    print(f"brian2 {args.target} N={args.neurons} examples={k} seconds={seconds:.2f} "
          f"examples_per_s={k / seconds:.2f}", flush=True)


if __name__ == "__main__":
    main()
