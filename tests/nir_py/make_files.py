"""Writes NIR graphs with the Python `nir` package, and what NIR's equations make of them.

Usage: python make_files.py OUT_DIR. For each graph (`lif`, `cubalif`, `conv`, `recurrent`, `subgraph`, `threshold`) it writes
OUT_DIR/NAME.nir with `nir.write` and OUT_DIR/NAME.json: the step `dt`, the number of steps, the
input (held at every step: snnc's `repeat(sample)`) and, per neuron node, the membrane after
every step and the spikes of every step, from a NumPy simulation of the NIR equations under
forward Euler with the input held over each step (docs/language.md, "NIR"):

    LIF:     v <- v + dt / tau (v_leak - v + r x); spike where v > v_threshold; there v <- v_reset
    CubaLIF: I <- I + dt / tau_syn (w_in x - I); then v <- v + dt / tau_mem (v_leak - v + r I)
    LI:      v <- v + dt / tau (v_leak - v + r x)
    Threshold: spike where x > threshold (no state: the input of the same step)

where x is what the node receives in the step: the weighted sum of its sources' outputs of the
same step (spikes for spiking neurons, v for LI, values for Input), except around a loop
without a Delay, which reads the previous step.
"""

import json
import pathlib
import sys

import nir
import numpy as np

DT = 1e-3
rng = np.random.default_rng(7)


def lif_step(v, x, p):
    v = v + DT / p["tau"] * (p["v_leak"] - v + p["r"] * x)
    s = v > p["v_threshold"]
    v = np.where(s, p["v_reset"], v)
    return v, s


def cubalif_step(state, x, p):
    i, v = state
    i = i + DT / p["tau_syn"] * (p["w_in"] * x - i)
    v = v + DT / p["tau_mem"] * (p["v_leak"] - v + p["r"] * i)
    s = v > p["v_threshold"]
    v = np.where(s, p["v_reset"], v)
    return (i, v), s


def conv2d(x, w, padding):
    c_out, c_in, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    h = xp.shape[1] - k + 1
    wd = xp.shape[2] - k + 1
    out = np.zeros((c_out, h, wd))
    for o in range(c_out):
        for y in range(h):
            for z in range(wd):
                out[o, y, z] = np.sum(xp[:, y : y + k, z : z + k] * w[o])
    return out


def sum_pool(x, k):
    c, h, w = x.shape
    return x[:, : h // k * k, : w // k * k].reshape(c, h // k, k, w // k, k).sum(axis=(2, 4))


def full(shape, value):
    return np.full(shape, value, dtype=np.float64)


def lif_graph():
    w = rng.normal(0.6, 0.5, size=(3, 4))
    # Time constants that differ per neuron and a bias: snnc writes per-neuron parameters.
    b = np.array([0.1, -0.2, 0.05])
    p = dict(tau=np.array([0.02, 0.015, 0.03]), r=full(3, 1.5), v_leak=full(3, 0.1), v_threshold=full(3, 0.6), v_reset=full(3, -0.2))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([4])}),
            "affine": nir.Affine(weight=w, bias=b),
            "lif": nir.LIF(**p),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "affine"), ("affine", "lif"), ("lif", "output")],
    )
    x = np.array([0.25, 1.0, 0.5, 0.75])
    v = np.zeros(3)
    vs, ss = [], []
    for _ in range(40):
        v, s = lif_step(v, w @ x + b, p)
        vs.append(v.tolist())
        ss.append(s.astype(int).tolist())
    return graph, x, {"lif": {"v": vs, "spikes": ss}}


def cubalif_graph():
    w = rng.normal(0.5, 0.5, size=(2, 3))
    p = dict(
        tau_syn=full(2, 0.005),
        tau_mem=full(2, 0.01),
        r=full(2, 2.0),
        v_leak=full(2, 0.0),
        v_threshold=full(2, 0.3),
        v_reset=full(2, 0.0),
        w_in=full(2, 1.5),
    )
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "linear": nir.Linear(weight=w),
            "cuba": nir.CubaLIF(**p),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "linear"), ("linear", "cuba"), ("cuba", "output")],
    )
    x = np.array([1.0, 0.5, 0.25])
    state = (np.zeros(2), np.zeros(2))
    vs, ss = [], []
    for _ in range(40):
        state, s = cubalif_step(state, w @ x, p)
        vs.append(state[1].tolist())
        ss.append(s.astype(int).tolist())
    return graph, x, {"cuba": {"v": vs, "spikes": ss}}


def conv_graph():
    wc = rng.normal(0.15, 0.3, size=(2, 1, 3, 3))
    wa = rng.normal(0.3, 0.4, size=(3, 18))
    bc = np.array([0.05, -0.03])
    p1 = dict(tau=full((2, 6, 6), 0.01), r=full((2, 6, 6), 10.0), v_leak=full((2, 6, 6), 0.0), v_threshold=full((2, 6, 6), 0.5), v_reset=full((2, 6, 6), 0.0))
    p2 = dict(tau=full(3, 0.004), r=full(3, 2.0), v_leak=full(3, 0.0), v_threshold=full(3, 0.4), v_reset=full(3, 0.0))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 6, 6])}),
            "conv": nir.Conv2d(input_shape=(6, 6), weight=wc, stride=1, padding=1, dilation=1, groups=1, bias=bc),
            "lif1": nir.LIF(**p1),
            "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
            "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0, end_dim=-1),
            "affine": nir.Affine(weight=wa, bias=np.zeros(3)),
            "lif2": nir.LIF(**p2),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "conv"), ("conv", "lif1"), ("lif1", "pool"), ("pool", "flat"), ("flat", "affine"), ("affine", "lif2"), ("lif2", "output")],
        type_check=False,
    )
    x = (np.arange(36).reshape(1, 6, 6) % 5) / 4.0
    v1, v2 = np.zeros((2, 6, 6)), np.zeros(3)
    v1s, s1s, v2s, s2s = [], [], [], []
    for _ in range(30):
        v1, s1 = lif_step(v1, conv2d(x, wc, 1) + bc[:, None, None], p1)
        pooled = sum_pool(s1.astype(float), 2).reshape(-1)
        v2, s2 = lif_step(v2, wa @ pooled, p2)
        v1s.append(v1.reshape(-1).tolist())
        s1s.append(s1.astype(int).reshape(-1).tolist())
        v2s.append(v2.tolist())
        s2s.append(s2.astype(int).tolist())
    return graph, x.reshape(-1), {"lif1": {"v": v1s, "spikes": s1s}, "lif2": {"v": v2s, "spikes": s2s}}


def conv_general(x, w, stride, padding):
    """A convolution of [c, h, w] by [out, c, kh, kw] with a stride and padding per axis."""
    c_out, c_in, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    h = (xp.shape[1] - kh) // stride[0] + 1
    wd = (xp.shape[2] - kw) // stride[1] + 1
    out = np.zeros((c_out, h, wd))
    for o in range(c_out):
        for y in range(h):
            for z in range(wd):
                ys, zs = y * stride[0], z * stride[1]
                out[o, y, z] = np.sum(xp[:, ys : ys + kh, zs : zs + kw] * w[o])
    return out


def conv1d_graph():
    """Two graphs: a Conv1d (stride 2, padding 1, a bias) on [channels, length] into a LIF, and
    a Conv2d with a 2 x 3 kernel, stride (1, 2) and padding (1, 0) into a LIF."""
    rng1 = np.random.default_rng(11)
    w1 = rng1.normal(0.3, 0.4, size=(3, 2, 3))
    b1 = np.array([0.1, -0.05, 0.02])
    w2 = rng1.normal(0.3, 0.3, size=(2, 1, 2, 3))
    p1 = dict(tau=full((3, 5), 0.01), r=full((3, 5), 2.0), v_leak=full((3, 5), 0.0), v_threshold=full((3, 5), 0.5), v_reset=full((3, 5), 0.0))
    p2 = dict(tau=full((2, 6, 3), 0.01), r=full((2, 6, 3), 10.0), v_leak=full((2, 6, 3), 0.0), v_threshold=full((2, 6, 3), 0.4), v_reset=full((2, 6, 3), 0.0))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2, 10])}),
            "conv1": nir.Conv1d(input_shape=10, weight=w1, stride=2, padding=1, dilation=1, groups=1, bias=b1),
            "lif1": nir.LIF(**p1),
            "output": nir.Output(output_type={"output": np.array([3, 5])}),
        },
        edges=[("input", "conv1"), ("conv1", "lif1"), ("lif1", "output")],
        type_check=False,
    )
    x = (np.arange(20).reshape(2, 10) % 7) / 4.0  # exact in f32, as snnc reads samples
    v1 = np.zeros((3, 5))
    v1s, s1s = [], []
    drive = conv_general(x[:, None, :], w1[:, :, None, :], (1, 2), (0, 1))[:, 0, :] + b1[:, None]
    for _ in range(30):
        v1, s1 = lif_step(v1, drive, p1)
        v1s.append(v1.reshape(-1).tolist())
        s1s.append(s1.astype(int).reshape(-1).tolist())
    rect = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 5, 7])}),
            "conv2": nir.Conv2d(input_shape=(5, 7), weight=w2, stride=(1, 2), padding=(1, 0), dilation=1, groups=1, bias=np.zeros(2)),
            "lif2": nir.LIF(**p2),
            "output": nir.Output(output_type={"output": np.array([2, 6, 3])}),
        },
        edges=[("input", "conv2"), ("conv2", "lif2"), ("lif2", "output")],
        type_check=False,
    )
    xr = (np.arange(35).reshape(1, 5, 7) % 5) / 4.0
    v2 = np.zeros((2, 6, 3))
    v2s, s2s = [], []
    drive2 = conv_general(xr, w2, (1, 2), (1, 0))
    for _ in range(30):
        v2, s2 = lif_step(v2, drive2, p2)
        v2s.append(v2.reshape(-1).tolist())
        s2s.append(s2.astype(int).reshape(-1).tolist())
    return [
        ("conv1d", graph, x.reshape(-1), {"lif1": {"v": v1s, "spikes": s1s}}),
        ("conv_rect", rect, xr.reshape(-1), {"lif2": {"v": v2s, "spikes": s2s}}),
    ]


def recurrent_graph():
    """A LIF layer with a recurrent Linear and no Delay: the loop reads the previous step's
    spikes (snnc's `feedback`)."""
    w_in = rng.normal(0.8, 0.3, size=(4, 2))
    w_rec = rng.normal(-0.3, 0.4, size=(4, 4))
    p = dict(tau=full(4, 0.01), r=full(4, 2.0), v_leak=full(4, 0.0), v_threshold=full(4, 0.5), v_reset=full(4, 0.0))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "w_in": nir.Linear(weight=w_in),
            "lif": nir.LIF(**p),
            "w_rec": nir.Linear(weight=w_rec),
            "output": nir.Output(output_type={"output": np.array([4])}),
        },
        edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    x = np.array([1.0, 0.5])
    v, s = np.zeros(4), np.zeros(4)
    vs, ss = [], []
    for _ in range(40):
        v, s = lif_step(v, w_in @ x + w_rec @ s.astype(float), p)
        vs.append(v.tolist())
        ss.append(s.astype(int).tolist())
    return graph, x, {"lif": {"v": vs, "spikes": ss}}


def subgraph_graph():
    """The recurrent layer as snnTorch writes one: a nested NIRGraph with its own Input and
    Output around a LIF and its recurrent Linear."""
    w_in = rng.normal(0.8, 0.3, size=(3, 2))
    w_rec = rng.normal(-0.3, 0.4, size=(3, 3))
    p = dict(tau=full(3, 0.02), r=full(3, 3.0), v_leak=full(3, 0.0), v_threshold=full(3, 0.5), v_reset=full(3, 0.0))
    layer = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "lif": nir.LIF(**p),
            "w_rec": nir.Linear(weight=w_rec),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "fc": nir.Linear(weight=w_in),
            "layer": layer,
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "fc"), ("fc", "layer"), ("layer", "output")],
    )
    x = np.array([0.75, 1.0])
    v, s = np.zeros(3), np.zeros(3)
    vs, ss = [], []
    for _ in range(40):
        v, s = lif_step(v, w_in @ x + w_rec @ s.astype(float), p)
        vs.append(v.tolist())
        ss.append(s.astype(int).tolist())
    return graph, x, {"layer_lif": {"v": vs, "spikes": ss}}


def threshold_graph():
    """Standalone Threshold nodes: one reading an LI's membrane of the same step (thresholds
    that differ per neuron), whose spikes feed an Affine with a bias and a LIF; another reading
    an Affine with a bias straight from the input."""
    w1 = rng.normal(0.8, 0.4, size=(4, 3))
    w2 = rng.normal(0.9, 0.3, size=(2, 4))
    b2 = np.array([0.2, -0.1])
    w3 = rng.normal(0.0, 1.0, size=(3, 3))
    b3 = np.array([0.3, -0.4, 0.1])
    p_li = dict(tau=full(4, 0.008), r=full(4, 1.5), v_leak=full(4, 0.05))
    th = np.array([1.0, 1.6, 2.0, 2.4])
    th2 = np.array([-0.8, -0.9, -2.5])
    p_lif = dict(tau=full(2, 0.005), r=full(2, 2.0), v_leak=full(2, 0.0), v_threshold=full(2, 1.5), v_reset=full(2, 0.0))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "fc": nir.Linear(weight=w1),
            "li": nir.LI(**p_li),
            "th": nir.Threshold(threshold=th),
            "fc2": nir.Affine(weight=w2, bias=b2),
            "lif": nir.LIF(**p_lif),
            "direct": nir.Affine(weight=w3, bias=b3),
            "th2": nir.Threshold(threshold=th2),
            "output": nir.Output(output_type={"output": np.array([2])}),
            "output2": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[
            ("input", "fc"),
            ("fc", "li"),
            ("li", "th"),
            ("th", "fc2"),
            ("fc2", "lif"),
            ("lif", "output"),
            ("input", "direct"),
            ("direct", "th2"),
            ("th2", "output2"),
        ],
    )
    x = np.array([0.5, 1.0, 0.75])
    v_li, v = np.zeros(4), np.zeros(2)
    li_vs, th_ss, vs, ss, th2_ss = [], [], [], [], []
    for _ in range(40):
        v_li = v_li + DT / p_li["tau"] * (p_li["v_leak"] - v_li + p_li["r"] * (w1 @ x))
        s_th = v_li > th
        v, s = lif_step(v, w2 @ s_th.astype(float) + b2, p_lif)
        s_th2 = w3 @ x + b3 > th2
        li_vs.append(v_li.tolist())
        th_ss.append(s_th.astype(int).tolist())
        vs.append(v.tolist())
        ss.append(s.astype(int).tolist())
        th2_ss.append(s_th2.astype(int).tolist())
    zeros = [[0] * 4 for _ in li_vs]
    # A Threshold has no membrane: its spikes only (`th` reads the LI's v, which snnc's
    # threshold population holds as its state).
    return graph, x, {
        "li": {"v": li_vs, "spikes": zeros},
        "th": {"v": li_vs, "spikes": th_ss},
        "lif": {"v": vs, "spikes": ss},
        "th2": {"spikes": th2_ss},
    }


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    graphs = []
    for name, make in [("lif", lif_graph), ("cubalif", cubalif_graph), ("conv", conv_graph), ("recurrent", recurrent_graph), ("subgraph", subgraph_graph), ("threshold", threshold_graph)]:
        graphs.append((name, *make()))
    graphs += conv1d_graph()
    for name, graph, x, traces in graphs:
        nir.write(out / f"{name}.nir", graph)
        spikes = sum(int(np.sum(t["spikes"])) for t in traces.values())
        (out / f"{name}.json").write_text(json.dumps({"dt": DT, "steps": len(next(iter(traces.values()))["v"]), "input": x.tolist(), "traces": traces}))
        print(f"{name}: {spikes} spikes", {k: np.sum(t["spikes"], axis=0).tolist() for k, t in traces.items()})


main()
