"""BindsNET peer for the Diehl & Cook 2015 unsupervised STDP network: BindsNET's own model of it,
bindsnet.models.DiehlAndCook2015, trained on the first K MNIST training examples and timed,
for comparison with snnc's models/diehl_cook_<N>.snn (benches/diehl_cook.sh).

  .venv-bindsnet/bin/python diehl_cook_bindsnet.py [--neurons N] [--examples K] [--seed S]

(setup.sh makes .venv-bindsnet from requirements-bindsnet.txt.) MNIST comes from
$SNNC_MNIST_DIR (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]), read with
gzip + numpy. It prints one line for benches/diehl_cook.sh to parse; the rest (presentations,
retries, excitatory spikes per presentation, CPU time) goes to stderr:

  bindsnet DiehlAndCook2015 N=<n> examples=<k> seconds=<s> examples_per_s=<x>

What is the same as snnc's model (models/diehl_cook_<N>.snn)
- DiehlAndCook2015(n_inpt=784, n_neurons=N, dt=0.5, nu=(1e-4, 1e-2), wmin=0, wmax=1,
  norm=78, theta_plus=0.05, tc_theta_decay=1e7, exc_thresh=-52, inh_thresh=-40); the
  model's built-in rest -65 / -60 mV, tau_m 100 / 10 ms, refractory 5 / 2 ms, traces 20 ms.
- Per example: Poisson input at pixel / 8 * intensity Hz (intensity 2, at most 63.75 Hz) for
  350 ms, then 150 ms of zero input (one network.run of 1000 steps, learning on throughout);
  when the excitatory layer fired fewer than 5 spikes in those 500 ms, intensity += 1 and the
  example is shown again, at most 20 times. Every presentation, retries included, is simulated
  and counted in the time.
- Input -> excitatory weights normalised to column sum 78 before the first example; the
  adaptive threshold theta (effective threshold -52 mV + theta, theta from 0, += 0.05 mV per
  spike, tau 1e7 ms) carries over from one example to the next, as in snnc.
- The first K training examples in file order; CPU, one thread (torch, OpenMP and MKL).

Differences, all from BindsNET's model (its code, not settings of this script) unless noted
- Neurons: BindsNET's DiehlAndCookNodes (excitatory) and LIFNodes (inhibitory) are
  current-based: a spike arriving over a synapse of weight w adds w mV to v at once, and v
  decays exactly to rest (v <- rest + (v - rest) exp(-dt / tau_m)). snnc's DiehlCookExc /
  DiehlCookInh are conductance-based: a spike adds w to a conductance ge or gi (decaying with
  1 ms / 2 ms) that drives v towards a reversal potential (0 mV, -100 mV exc / -85 mV inh),
  integrated with forward Euler. So the weights have other units and other effects: an input
  spike of weight w moves an excitatory v by w mV in BindsNET, by about 0.65 w mV (at -65 mV)
  in snnc.
- Layer-to-layer strengths: BindsNET's defaults exc = 22.5 mV (exc -> inh, one to one) and
  inh = 17.5 mV (inh -> exc, all but self) are kept; snnc's 10.4 and 17.0 are conductance
  jumps and cannot be carried over (in snnc one excitatory spike makes its inhibitory partner
  fire, as 22.5 mV does here from rest; an inhibitory spike moves an excitatory v at -60 mV by
  about -14 mV in snnc against -17.5 mV here). BindsNET's eth_mnist example uses inh = 120.
- Exc reset -60 mV (snnc -65 mV); v starts at rest, -65 / -60 mV (snnc -105 / -100 mV).
  During the refractory period BindsNET drops the input but lets v decay towards rest; snnc
  holds v. Spike when v >= threshold (snnc: v > threshold).
- At most one excitatory spike per step: DiehlAndCookNodes(one_spike=True) keeps one of the
  neurons that crossed threshold in a step, drawn at random (the others are reset and get
  their theta increment but their spike is dropped). snnc lets all of them spike.
- Synaptic delay: BindsNET runs its layers synchronously, each layer reading the spikes every
  layer fired in the previous step, so input -> exc, exc -> inh and inh -> exc each take one
  step (0.5 ms); in snnc input -> exc and exc -> inh arrive within the step and only
  inh -> exc (`feedback`) takes one step.
- STDP: BindsNET's default rule for this model, MulticompartmentConnection PostPre: on a
  presynaptic spike w -= 1e-4 x_post, on a postsynaptic spike w += 1e-2 x_pre, with one 20 ms
  trace per neuron (set to 1 on a spike, after the step's decay), weights clipped to [0, 1]
  every step. snnc's DiehlCookStdp (the authors' script) multiplies the potentiation by a
  second, 40 ms postsynaptic trace read before the spike sets it (pre * post2before), which
  BindsNET has no rule for, so BindsNET's potentiation is much larger. (BindsNET's
  MCC_learning.DiehlAndCook is the paper's post-only rule with x_tar, not the authors' code;
  not used.)
- Normalisation: BindsNET normalises the input weights at the end of every network.run,
  i.e. before every presentation, retries included (as the authors' script does); snnc
  normalises before each new example only. BindsNET's default norm is 78.4; 78 is passed
  here (snnc's total).
- Initial input weights: uniform(0, 0.3) (the model's), snnc uniform(0.003, 0.303); both are
  normalised before the first example.
- Poisson input: bindsnet.encoding.poisson draws Poisson-distributed inter-spike intervals
  in steps (mean 1000 / (rate dt)), at least 1, so the trains have the right mean rate but are
  more regular than a Poisson process; snnc (and Brian2) spike with probability rate * dt each
  step. The encoding is done in the timed loop, per presentation (the example's data loader
  encodes each image likewise).
- State between examples: network.reset_state_variables() after every presentation (after
  every network.run, where BindsNET's eth_mnist example calls it): v back to rest, traces and
  refractory counters to 0, theta kept. After the 150 ms rest this changes little (the traces
  are at exp(-7.5) of their value); snnc resets nothing and lets the rest settle the network.
  eth_mnist itself has no rest period (its time is 250 ms of input, then the reset).
- A Monitor records the excitatory spikes of each presentation (the retry needs their count;
  eth_mnist monitors them too), one small copy per step.
- The random numbers (other streams: other spike trains and retry counts) and the float type
  (float32 here, snnc's default too).

Timing: examples/s = K / seconds, seconds the wall time of the training loop (Poisson
encoding, every network.run, retries, resets), imports, MNIST loading and model construction
excluded.
"""
import os

# One thread, set before torch is imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as common  # noqa: E402

DT = 0.5               # ms
PRESENT_MS = 350
REST_MS = 150
PRESENT_STEPS = int(PRESENT_MS / DT)
TOTAL_STEPS = int((PRESENT_MS + REST_MS) / DT)
MAX_RETRIES = 20
MIN_SPIKES = 5         # retry when the excitatory layer fired fewer
HZ_PER_INTENSITY = 255 / 8  # rate = pixel / 8 * intensity Hz, pixel in 0..255


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--neurons", "-n", type=int, default=400, help="excitatory (and inhibitory) neurons")
    p.add_argument("--examples", "-k", type=int, default=200, help="first K training examples")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", default=os.environ.get("SNNC_MNIST_DIR", "data/mnist"))
    args = p.parse_args()

    import torch
    from bindsnet.encoding import poisson
    from bindsnet.models import DiehlAndCook2015
    from bindsnet.network.monitors import Monitor

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)

    images = torch.from_numpy(common.load_mnist(args.data, "train", limit=args.examples)[0])
    k, n = args.examples, args.neurons

    network = DiehlAndCook2015(
        n_inpt=784, n_neurons=n, dt=DT, nu=(1e-4, 1e-2), wmin=0.0, wmax=1.0, norm=78.0,
        theta_plus=0.05, tc_theta_decay=1e7, exc_thresh=-52.0, inh_thresh=-40.0,
    )  # exc=22.5, inh=17.5: the model's defaults (see the docstring)
    network.train(True)
    exc_layer = network.layers["Ae"]
    spikes = Monitor(exc_layer, state_vars=["s"], time=TOTAL_STEPS)
    network.add_monitor(spikes, name="Ae_spikes")
    input_exc = network.connections[("X", "Ae")]
    input_exc.normalize()  # column sums 78 before the first example (then after every run)
    rest = torch.zeros(TOTAL_STEPS - PRESENT_STEPS, 784, dtype=torch.uint8)

    presentations = total_spikes = 0
    start, cpu = time.perf_counter(), time.process_time()
    for image in images:
        intensity = 2
        for attempt in range(MAX_RETRIES + 1):
            encoded = poisson(image * (intensity * HZ_PER_INTENSITY), time=PRESENT_MS, dt=DT)
            inputs = {"X": torch.cat((encoded.view(PRESENT_STEPS, 784), rest))}
            network.run(inputs=inputs, time=PRESENT_MS + REST_MS)
            count = int(spikes.get("s").sum())
            network.reset_state_variables()
            presentations += 1
            total_spikes += count
            if count >= MIN_SPIKES:
                break
            intensity += 1
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu

    w = input_exc.pipeline[0].value
    log(f"simulated {presentations} presentations ({presentations - k} retries, "
        f"{total_spikes / presentations:.1f} excitatory spikes each); loop {seconds:.2f} s wall, "
        f"{cpu_s:.2f} s CPU; after training: mean theta {exc_layer.theta.mean().item():.3f} mV, "
        f"mean w {w.mean().item():.4f}, peak RSS {common.peak_rss_mib():.0f} MiB; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"bindsnet DiehlAndCook2015 N={n} examples={k} seconds={seconds:.2f} "
          f"examples_per_s={k / seconds:.2f}", flush=True)


if __name__ == "__main__":
    main()
