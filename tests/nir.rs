//! NIR export and import (`snnc export --nir`, `snnc import`): the shipped models NIR can
//! express go snnc -> NIR -> snnc to the same IR and the same spikes; graphs written by the
//! Python `nir` package (LIF, CubaLIF, a small conv net) simulate as a NumPy reference of the
//! NIR equations says; a file snnc writes loads in `nir.read`; every `snn::nir::` code comes
//! from the input it names, and damaged files never panic.
//!
//! The Python half runs with the interpreter in `SNNC_NIR_PYTHON`, else
//! `tests/nir_py/.venv/bin/python` (`.ci/run` creates it with `pip install nir numpy`); without
//! one that imports `nir`, those tests print why and skip. The files make_files.py wrote once
//! are kept in tests/fixtures/nir and checked in any case.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{build, features, load, root, valid};
use snnc::exec::engine::{Ctx, Engine, EngineKind, ParamsAccess, Shard};
use snnc::exec::state::{Params, SampleRef, Trace, init_params, net_params};
use snnc::ir::Module;
use snnc::ir::validate::Valid;
use snnc::nir::{self, Array, Graph, NirError, Node, Value, export, hdf5, import};

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nir").join(name);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn forward(engine: &dyn Engine<f64>, m: &Valid, params: &Params<f64>, samples: &[SampleRef]) -> Trace<f64> {
    let net = net_params::<f64>(m);
    let ctx = Ctx { module: m, seed: 11, net: &net };
    engine.forward(&ctx, ParamsAccess::Shared(params), Shard { samples, hoisted: None }, None)
}

/// Both models run to the same spikes and states, bit for bit, on `engine`; the populations
/// `spiking` must spike for the comparison to mean anything.
fn assert_same_run(engine: EngineKind, a: (&Valid, &Params<f64>), b: (&Valid, &Params<f64>), samples: &[SampleRef], spiking: &[usize]) {
    let before = forward(build::<f64>(engine, a.0).as_ref(), a.0, a.1, samples);
    let after = forward(build::<f64>(engine, b.0).as_ref(), b.0, b.1, samples);
    for p in spiking {
        assert!((0..before.spikes[*p].len()).any(|k| before.spikes[*p].get(k)), "population {p} must spike for the comparison");
    }
    assert_eq!(before.spikes, after.spikes);
    assert_eq!(before.states, after.states);
}

/// The module without its train block (NIR carries none).
fn network_only(mut module: Module) -> Module {
    module.train = None;
    module
}

#[test]
fn shipped_models_go_through_nir_to_the_same_ir_and_spikes() {
    for name in ["yin_yang.snn", "snntorch_tutorial5.snn", "lab_lif_mnist.snn"] {
        let path = root().join("models").join(name);
        let original = load(name);
        let graph = snnc::cli::nir::export_graph(&path, None, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = hdf5::write(&graph).expect("writes");
        assert_eq!(hdf5::read(&bytes).expect("reads back"), graph, "{name}: the HDF5 layout keeps the graph");
        let file = tmp("round_trip").join(name.replace(".snn", ".nir"));
        std::fs::write(&file, &bytes).expect("written");
        let imported = snnc::cli::nir::import_file(&file, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(network_only(original.clone()), imported.module, "{name}: the imported IR\n{}", imported.text);

        // The same weights, and the same spikes on the same seed, a few steps long.
        let seed = original.train.as_ref().map_or(0, |t| t.seed);
        let params = init_params::<f64>(&original, seed);
        assert_eq!(params.weights, imported.params.weights, "{name}: weights");
        let shorten = |mut m: Module| {
            m.steps = m.steps.min(12);
            valid(m)
        };
        let (a, b) = (shorten(network_only(original)), shorten(imported.module));
        let n: usize = a.inputs[0].shape.iter().product();
        let (x, y) = (features(n, 1), features(n, 2));
        let samples = [SampleRef { id: 3, features: &x }, SampleRef { id: 8, features: &y }];
        let before = forward(build::<f64>(EngineKind::Jit, &a).as_ref(), &a, &params, &samples);
        let after = forward(build::<f64>(EngineKind::Jit, &b).as_ref(), &b, &imported.params, &samples);
        let spikes: usize =
            (0..before.spikes.len()).map(|p| (0..before.spikes[p].len()).filter(|k| before.spikes[p].get(*k)).count()).sum();
        assert!(spikes > 0, "{name}: the comparison needs spikes");
        assert_eq!(before.spikes, after.spikes, "{name}: spikes");
        assert_eq!(before.states, after.states, "{name}: states");
    }
}

/// Delays and loops: `delay 3 ms` and `feedback` become NIR `Delay` nodes of 3 and 1 steps,
/// which import as `delay` flags with the same spikes; the graph still loads in `nir.read`.
#[test]
fn delays_and_loops_go_through_nir_delay_nodes() {
    let text = "import std::neurons\nimport std::encoders\n\nnetwork Delayed {\n    steps = 20\n    input x[4] = repeat(sample)\n    population a[6] = LeakyZero(beta = 0.8, threshold = 0.5)\n    population b[3] = LI(beta = 0.7)\n    connect x -> a : dense(init = uniform(0, 1))\n    connect a -> b : dense delay 3 ms\n    connect b.v -> a : dense(init = uniform(-0.5, 0.5)) feedback\n}\n";
    let path = tmp("delays").join("delayed.snn");
    std::fs::write(&path, text).expect("written");
    let graph = snnc::cli::nir::export_graph(&path, None, None).expect("exports");
    let mut delays: Vec<f64> =
        graph.nodes.values().filter(|n| n.kind == "Delay").map(|n| n.array("delay").expect("delay").data[0]).collect();
    delays.sort_by(f64::total_cmp);
    assert_eq!(delays, [0.001, 0.003]);
    let file = tmp("delays").join("delayed.nir");
    std::fs::write(&file, hdf5::write(&graph).expect("writes")).expect("written");
    let imported = snnc::cli::nir::import_file(&file, None).expect("imports");
    assert!(imported.text.contains("connect a -> b : dense delay 0.003 s"), "{}", imported.text);
    assert!(imported.text.contains("connect b.v -> a : dense delay 0.001 s"), "{}", imported.text);
    let original = snnc::cli::driver::check_path(&path).expect("reads").outcome.module.expect("lowers");
    let params = init_params::<f64>(&original, 0);
    assert_eq!(params.weights, imported.params.weights);
    let (a, b) = (valid(original), valid(imported.module));
    let x = [0.5f32, 1.0, 0.25, 0.75];
    let samples = [SampleRef { id: 1, features: &x }];
    assert_same_run(EngineKind::Oracle, (&a, &params), (&b, &imported.params), &samples, &[0]);
    read_back(&file, "delays_and_loops_go_through_nir_delay_nodes (its nir.read part)");
}

/// A 1-d convolution, a 2-d one with a kernel, stride and padding per axis, and a rectangular
/// sum pool go to `Conv1d`, `Conv2d` and `SumPool2d` nodes and come back as the same
/// connections with the same spikes; the file loads in `nir.read`.
#[test]
fn one_dimensional_and_rectangular_convolutions_go_through_nir() {
    let text = "import std::neurons\nimport std::encoders\n\nnetwork Convs {\n    steps = 15\n    input x[2, 12] = repeat(sample)\n    input y[1, 6, 9] = repeat(sample)\n    \
                population a[3, 6] = LeakyZero(beta = 0.8, threshold = 0.5)\n    population b[2, 6, 4] = LeakyZero(beta = 0.8, threshold = 0.5)\n    \
                population c[2, 3, 2] = LI(beta = 0.7)\n    \
                connect x -> a : conv1d(kernel = 3, stride = 2, padding = 1, init = uniform(0, 1))\n    \
                connect y -> b : conv2d(kernel = [3, 2], stride = [1, 2], padding = [1, 0], init = uniform(0, 1))\n    \
                connect b -> c : sum_pool2d(kernel = [2, 2])\n}\n";
    let path = tmp("convs").join("convs.snn");
    std::fs::write(&path, text).expect("written");
    let graph = snnc::cli::nir::export_graph(&path, None, None).expect("exports");
    let kinds: Vec<&str> = graph.nodes.values().map(|n| n.kind.as_str()).collect();
    assert!(kinds.contains(&"Conv1d") && kinds.contains(&"Conv2d") && kinds.contains(&"SumPool2d"), "{kinds:?}");
    let file = tmp("convs").join("convs.nir");
    std::fs::write(&file, hdf5::write(&graph).expect("writes")).expect("written");
    let imported = snnc::cli::nir::import_file(&file, None).expect("imports");
    for line in [
        // The connection's own text travels in the node's metadata.
        "connect x -> a : conv1d(kernel = 3, stride = 2, padding = 1",
        "connect y -> b : conv2d(kernel = [3, 2], stride = [1, 2], padding = [1, 0]",
    ] {
        assert!(imported.text.contains(line), "{line}\n{}", imported.text);
    }
    let original = snnc::cli::driver::check_path(&path).expect("reads").outcome.module.expect("lowers");
    let params = init_params::<f64>(&original, 0);
    assert_eq!(params.weights, imported.params.weights);
    let (a, b) = (valid(original), valid(imported.module));
    let x: Vec<f32> = (0..24 + 54).map(|k| (k % 5) as f32 / 4.0).collect();
    let samples = [SampleRef { id: 1, features: &x }];
    assert_same_run(EngineKind::Jit, (&a, &params), (&b, &imported.params), &samples, &[0, 1]);
    if let Some(read) = read_back(&file, "one_dimensional_and_rectangular_convolutions_go_through_nir (its nir.read part)") {
        let nodes = read["nodes"].as_object().expect("nodes");
        let conv1d = nodes.values().find(|n| n["type"] == "Conv1d").expect("a Conv1d");
        assert_eq!(conv1d["shapes"]["weight"], serde_json::json!([3, 2, 3]));
        let conv2d = nodes.values().find(|n| n["type"] == "Conv2d").expect("a Conv2d");
        assert_eq!(conv2d["shapes"]["weight"], serde_json::json!([2, 1, 3, 2]));
    }
}

/// A readout written `u = exp(-dt / tau) (u + i)` (std::neurons' LeakyIntegrator, per-neuron
/// time constants) is an `LI` with `tau = dt / (1 - a)` and `r = a / (1 - a)`, `a = exp(-dt /
/// tau)`; imported back it integrates to the same membrane.
#[test]
fn a_leaky_integrator_exports_as_an_li() {
    let text = "import std::neurons\nimport std::encoders\n\nnetwork Readout {\n    steps = 12\n    input x[3] = repeat(sample)\n    \
                population out[2] = LeakyIntegrator\n    connect x -> out : dense(init = uniform(-1, 1))\n}\n";
    let path = tmp("integrator").join("readout.snn");
    std::fs::write(&path, text).expect("written");
    let graph = snnc::cli::nir::export_graph(&path, None, None).expect("exports");
    let node = &graph.nodes["out"];
    assert_eq!(node.kind, "LI");
    let original = snnc::cli::driver::check_path(&path).expect("reads").outcome.module.expect("lowers");
    let a = (-original.dt / 5e-3f64).exp();
    let (tau, r) = (node.array("tau").expect("tau"), node.array("r").expect("r"));
    for k in 0..2 {
        assert!((tau.data[k] - original.dt / (1.0 - a)).abs() < 1e-12 * tau.data[k], "tau {}", tau.data[k]);
        assert!((r.data[k] - a / (1.0 - a)).abs() < 1e-9 * r.data[k], "r {}", r.data[k]);
    }
    let file = tmp("integrator").join("readout.nir");
    std::fs::write(&file, hdf5::write(&graph).expect("writes")).expect("written");
    let imported = snnc::cli::nir::import_file(&file, None).expect("imports");
    let params = init_params::<f64>(&original, 0);
    let (a, b) = (valid(original), valid(imported.module));
    let x = [0.5f32, 1.0, 0.25];
    let samples = [SampleRef { id: 1, features: &x }];
    let before = forward(build::<f64>(EngineKind::Oracle, &a).as_ref(), &a, &params, &samples);
    let after = forward(build::<f64>(EngineKind::Oracle, &b).as_ref(), &b, &imported.params, &samples);
    let (u, v) = (a.populations[0].var_by_name("u").expect("u").0 as usize, b.populations[0].var_by_name("v").expect("v").0 as usize);
    assert!(before.states[0][u].iter().any(|x| x.abs() > 1e-3), "the readout must move");
    for (x, y) in before.states[0][u].iter().zip(&after.states[0][v]) {
        assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn the_command_line_exports_imports_and_checks() {
    let dir = tmp("cli");
    let nir_file = dir.join("yin_yang.nir");
    let snnc = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(root()).output().expect("snnc runs");
    let out = snnc(&["export", "models/yin_yang.snn", "--nir", nir_file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = snnc(&["import", nir_file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("population hidden[120] = Leaky(beta = 0.9, threshold = 1)"), "{text}");
    let model_dir = dir.join("imported");
    let out = snnc(&["import", nir_file.to_str().expect("utf-8"), "--out", model_dir.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(model_dir.join("checkpoint.safetensors").exists());
    let out = snnc(&["check", model_dir.join("yin_yang.snn").to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // Coded errors, not panics: a model that does not check, one NIR cannot express, a file
    // that is not NIR.
    let out = snnc(&["export", "tests/fixtures/errors/units_ode.snn", "--nir", nir_file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("snn::units::"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = snnc(&["export", "models/diehl_cook_100.snn", "--nir", nir_file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("snn::nir::unsupported"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = snnc(&["import", "models/yin_yang.snn", "--dt", "1e-3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("snn::nir::not_hdf5"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The Python interpreter with `nir` and NumPy, or why there is none.
fn python() -> Result<PathBuf, String> {
    let candidate = std::env::var_os("SNNC_NIR_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join("tests/nir_py/.venv/bin/python"));
    let probe = Command::new(&candidate).args(["-c", "import nir, numpy, h5py"]).output();
    match probe {
        Ok(out) if out.status.success() => Ok(candidate),
        Ok(out) => Err(format!("{} cannot import nir: {}", candidate.display(), String::from_utf8_lossy(&out.stderr).trim())),
        Err(error) => Err(format!("no Python at {} ({error})", candidate.display())),
    }
}

/// What Python's `nir.read` (type checks on) makes of `file`, as tests/nir_py/read_back.py
/// prints it, or `None` (the skip reported for `test`) where the venv is missing.
fn read_back(file: &Path, test: &str) -> Option<serde_json::Value> {
    let python = match python() {
        Ok(python) => python,
        Err(why) => {
            skip(test, &why);
            return None;
        }
    };
    let out = Command::new(&python).arg(root().join("tests/nir_py/read_back.py")).arg(file).output().expect("python runs");
    assert!(out.status.success(), "nir.read failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("json"))
}

fn skip(test: &str, why: &str) {
    eprintln!(
        "SKIPPED {test}: {why}; create the venv with `python3 -m venv tests/nir_py/.venv && tests/nir_py/.venv/bin/pip install nir numpy` or set SNNC_NIR_PYTHON"
    );
}

#[test]
fn files_of_the_python_nir_package_simulate_the_nir_equations() {
    let python = match python() {
        Ok(python) => python,
        Err(why) => return skip("files_of_the_python_nir_package_simulate_the_nir_equations", &why),
    };
    let dir = tmp("python_files");
    let out = Command::new(&python).arg(root().join("tests/nir_py/make_files.py")).arg(&dir).output().expect("python runs");
    assert!(out.status.success(), "make_files.py: {}", String::from_utf8_lossy(&out.stderr));
    simulate_as_the_reference_says(&dir);
}

/// The same check on the files of tests/nir_py/make_files.py kept in tests/fixtures/nir (as
/// `nir.write` wrote them: gzip-compressed datasets), so that reading files of the Python
/// package is tested where Python is missing too.
#[test]
fn kept_files_of_the_python_nir_package_simulate_the_nir_equations() {
    simulate_as_the_reference_says(&root().join("tests/fixtures/nir"));
}

/// Imports each graph of `dir` (written by make_files.py) and runs it on the oracle in f64:
/// every membrane within 1e-9 of the NumPy reference's and every spike the same.
fn simulate_as_the_reference_says(dir: &Path) {
    // The LIF's time constants differ per neuron and its Affine has a bias: a neuron written for
    // the population, with per-neuron parameters; the conv net's Conv2d has a bias per channel
    // and its pool feeds a Flatten, so a relay carries the pooled values; the recurrent LIF's
    // loop reads the previous step, also inside a nested graph (snnTorch's recurrent layers); a
    // Conv1d on [channels, length] and a Conv2d with a 2 x 3 kernel and a stride and padding
    // per axis.
    for (name, written_out) in [
        ("lif", "neuron NirLIF_lif {"),
        ("cubalif", "NirCubaLIF(tau_syn = 0.005 s"),
        ("conv", "population pool[2, 3, 3] = LI(beta = 0)"),
        ("recurrent", "connect lif -> lif : dense feedback"),
        ("subgraph", "connect layer_lif -> layer_lif : dense feedback"),
        ("conv1d", "connect input_ -> lif1 : conv1d(kernel = 3, stride = 2, padding = 1)"),
        ("conv_rect", "connect input_ -> lif2 : conv2d(kernel = [2, 3], stride = [1, 2], padding = [1, 0])"),
        // Standalone Thresholds: one reads the LI's membrane of the same step, one an Affine
        // whose bias lowers its thresholds (per neuron then).
        ("threshold", "connect li.v -> th : one_to_one(weight = 1)"),
    ] {
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("json")).expect("parses");
        let dt = reference["dt"].as_f64().expect("dt");
        let imported = snnc::cli::nir::import_file(&dir.join(format!("{name}.nir")), Some(dt)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(imported.text.contains(written_out), "{name}: {}", imported.text);
        let mut module = imported.module;
        module.steps = reference["steps"].as_u64().expect("steps") as usize;
        let m = valid(module);
        let input: Vec<f32> = reference["input"].as_array().expect("input").iter().map(|v| v.as_f64().expect("number") as f32).collect();
        let samples = [SampleRef { id: 0, features: &input }];
        let trace = forward(build::<f64>(EngineKind::Oracle, &m).as_ref(), &m, &imported.params, &samples);
        let mut spikes = 0;
        for (pop_name, expected) in reference["traces"].as_object().expect("traces") {
            let p = m.populations.iter().position(|p| p.name == *pop_name).unwrap_or_else(|| panic!("{name}: no population {pop_name}"));
            let v = m.populations[p].var_by_name("v").expect("v").0 as usize;
            let size = m.populations[p].size();
            // A NIR Threshold has no membrane: the reference may give its spikes only.
            let rows_v = expected.get("v").and_then(|v| v.as_array());
            for (t, row_s) in expected["spikes"].as_array().expect("spikes").iter().enumerate() {
                for k in 0..size {
                    if let Some(rows_v) = rows_v {
                        let want = rows_v[t][k].as_f64().expect("number");
                        let got = trace.states[p][v][(t + 1) * trace.row(p) + k];
                        assert!(
                            (want - got).abs() <= 1e-9 * (1.0 + want.abs()),
                            "{name}: {pop_name}.v step {t} neuron {k}: NumPy {want}, snnc {got}"
                        );
                    }
                    let fired = row_s[k].as_u64().expect("0 or 1") == 1;
                    assert_eq!(trace.spikes[p].get(t * trace.row(p) + k), fired, "{name}: {pop_name} spike at step {t} neuron {k}");
                    spikes += usize::from(fired);
                }
            }
        }
        assert!(spikes > 0, "{name}: the reference must spike for the comparison to mean anything");
    }
}

#[test]
fn a_file_snnc_writes_loads_in_python_nir() {
    let graph = snnc::cli::nir::export_graph(&root().join("models/yin_yang.snn"), None, None).expect("exports");
    let file = tmp("read_back").join("yin_yang.nir");
    std::fs::write(&file, hdf5::write(&graph).expect("writes")).expect("written");
    let Some(read) = read_back(&file, "a_file_snnc_writes_loads_in_python_nir") else { return };
    assert_eq!(read["version"], hdf5::VERSION);
    let nodes = read["nodes"].as_object().expect("nodes");
    assert_eq!(nodes.len(), graph.nodes.len());
    for (name, node) in &graph.nodes {
        assert_eq!(nodes[name]["type"], node.kind.as_str(), "{name}");
        for (param, value) in &node.params {
            if let Value::Array(array) = value
                && let Some(sum) = nodes[name]["sums"].get(param)
            {
                let ours: f64 = array.data.iter().sum();
                assert!((sum.as_f64().expect("number") - ours).abs() <= 1e-9 * (1.0 + ours.abs()), "{name}.{param}: {sum} vs {ours}");
            }
        }
    }
    let edges: Vec<(String, String)> = read["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (e[0].as_str().expect("source").to_string(), e[1].as_str().expect("target").to_string()))
        .collect();
    assert_eq!(edges, graph.edges);
    assert_eq!(nodes["hidden"]["type"], "LI");
    assert_eq!(nodes["hidden__spike"]["type"], "Threshold");
    assert_eq!(nodes["hidden__reset"]["type"], "Scale");
}

/// A small valid graph: Input[4] -> Linear -> LIF[3] -> Output.
fn small_graph() -> Graph {
    let mut graph = Graph::default();
    let three = |v: f64| Array::full(&[3], v);
    graph.nodes.insert("x".into(), Node::new("Input").with("shape", Array::new(vec![1], vec![4.0])));
    graph.nodes.insert("w".into(), Node::new("Linear").with("weight", Array::new(vec![3, 4], (0..12).map(f64::from).collect())));
    graph.nodes.insert(
        "lif".into(),
        Node::new("LIF")
            .with("tau", three(0.02))
            .with("r", three(1.0))
            .with("v_leak", three(0.0))
            .with("v_threshold", three(1.0))
            .with("v_reset", three(0.0)),
    );
    graph.nodes.insert("out".into(), Node::new("Output").with("shape", Array::new(vec![1], vec![3.0])));
    graph.edges = vec![("x".into(), "w".into()), ("w".into(), "lif".into()), ("lif".into(), "out".into())];
    graph
}

/// Imports a graph after a trip through the file format.
fn import_bytes(graph: &Graph, dt: Option<f64>) -> Result<import::Imported, NirError> {
    import::import(&hdf5::read(&hdf5::write(graph)?)?, dt)
}

fn code_of<T: std::fmt::Debug>(result: Result<T, NirError>) -> &'static str {
    let error = result.expect_err("an error");
    assert!(!error.message.is_empty() && !error.help.is_empty());
    error.code
}

#[test]
fn every_nir_code_comes_from_the_input_it_names() {
    let mut seen = std::collections::BTreeSet::new();
    let mut expect = |code: &'static str, got: &'static str| {
        assert_eq!(got, code);
        seen.insert(code);
    };
    assert!(import_bytes(&small_graph(), Some(1e-3)).is_ok());
    expect(nir::NOT_HDF5, code_of(hdf5::read(b"network Tutorial5 { steps = 25 }")));
    let mut builder = hdf5_pure::FileBuilder::new();
    builder.create_dataset("version").with_vlen_strings(&["1.0.8"]).with_shape(&[]);
    expect(nir::BAD_LAYOUT, code_of(hdf5::read(&builder.finish().expect("hdf5"))));
    let mut graph = small_graph();
    graph.nodes.get_mut("lif").expect("lif").kind = "Spiky".into();
    expect(nir::UNKNOWN_NODE, code_of(import_bytes(&graph, Some(1e-3))));
    let mut graph = small_graph();
    graph.edges.push(("lif".into(), "nowhere".into()));
    expect(nir::DANGLING_EDGE, code_of(import_bytes(&graph, Some(1e-3))));
    let mut graph = small_graph();
    graph.nodes.insert("x".into(), Node::new("Input").with("shape", Array::new(vec![1], vec![5.0])));
    expect(nir::SHAPE_MISMATCH, code_of(import_bytes(&graph, Some(1e-3))));
    let mut graph = small_graph();
    graph.nodes.get_mut("lif").expect("lif").params.remove("tau");
    expect(nir::MISSING_PARAM, code_of(import_bytes(&graph, Some(1e-3))));
    expect(nir::NO_DT, code_of(import_bytes(&small_graph(), None)));
    // Unsupported on import: a time constant that is not positive, a delay; on export: a
    // neuron NIR has no node for.
    let mut graph = small_graph();
    graph.nodes.get_mut("lif").expect("lif").params.insert("tau".into(), Value::Array(Array::full(&[3], -0.02)));
    let error = import_bytes(&graph, Some(1e-3)).expect_err("a negative tau");
    assert!(error.message.contains("`tau` = -0.02"), "{error}");
    expect(nir::UNSUPPORTED, error.code);
    let mut graph = small_graph();
    graph.nodes.insert("d".into(), Node::new("Delay").with("delay", Array::full(&[3], 0.0025)));
    graph.edges.push(("lif".into(), "d".into()));
    let error = import_bytes(&graph, Some(1e-3)).expect_err("2.5 steps");
    assert!(error.message.contains("whole number of steps"), "{error}");
    expect(nir::UNSUPPORTED, error.code);
    let mut graph = small_graph();
    // PyTorch's `same` padding with stride 2 (or an even kernel) pads one side more than the
    // other, which snnc's convolutions do not.
    let mut conv = Node::new("Conv1d").with("weight", Array::full(&[1, 1, 2], 1.0)).with("stride", Array::scalar(2.0));
    conv.params.insert("padding".into(), nir::Value::Text("same".into()));
    graph.nodes.insert("c".into(), conv);
    graph.edges.push(("lif".into(), "c".into()));
    expect(nir::UNSUPPORTED, code_of(import_bytes(&graph, Some(1e-3))));
    let diehl_cook = load("diehl_cook_100.snn");
    let params = init_params::<f64>(&diehl_cook, 0);
    let error = export::export(&diehl_cook, &params, diehl_cook.dt, &export::Hints::default()).expect_err("DiehlCookExc has no NIR node");
    assert!(error.message.contains("DiehlCookExc"), "{error}");
    expect(nir::UNSUPPORTED, error.code);
    let eventprop = load("eventprop_mnist_shallow.snn");
    let params = init_params::<f64>(&eventprop, 0);
    let error = export::export(&eventprop, &params, eventprop.dt, &export::Hints::default()).expect_err("std's CubaLIF");
    assert!(error.message.contains("continuous dynamics") && error.help.contains("CubaLIF, CubaLI"), "{error}");
    expect(nir::UNSUPPORTED, error.code);
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), {
        nir::CODES.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>()
    });
}

#[test]
fn damaged_files_are_reported_never_a_panic() {
    let bytes = hdf5::write(&small_graph()).expect("writes");
    let lengths: Vec<usize> = (0..bytes.len()).step_by(7).chain([bytes.len() - 1]).collect();
    for len in lengths {
        let result = std::panic::catch_unwind(|| hdf5::read(&bytes[..len]).and_then(|g| import::import(&g, Some(1e-3))));
        assert!(matches!(result, Ok(Err(_))), "{len} of {} bytes: {result:?}", bytes.len());
    }
    for position in (0..bytes.len()).step_by(13) {
        let mut flipped = bytes.clone();
        flipped[position] ^= 0x5A;
        let result = std::panic::catch_unwind(|| hdf5::read(&flipped).and_then(|g| import::import(&g, Some(1e-3))));
        assert!(result.is_ok(), "a flipped byte at {position} panics");
    }
}

/// The first membrane-like state's trace of population `p` with every spike, for comparing two
/// runs of one model.
fn run_oracle(m: &Valid, params: &Params<f64>, input: &[f32]) -> Trace<f64> {
    let samples = [SampleRef { id: 0, features: input }];
    forward(build::<f64>(EngineKind::Oracle, m).as_ref(), m, params, &samples)
}

/// Import, export, import: the graphs of the Python `nir` package that snnc writes out as its
/// own neurons (a LIF with per-neuron time constants and a bias, a CubaLIF, standalone
/// Thresholds next to an LI and a LIF, a conv net whose pool feeds a relay) export to the same NIR nodes with the same parameters
/// and import again to the same text, IR, parameters and spikes.
#[test]
fn python_made_graphs_go_through_snnc_and_back_to_the_same_ir() {
    let dir = root().join("tests/fixtures/nir");
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("lif", &[("lif", "LIF")]),
        // The pool's relay (`LI(beta = 0)`) is an `LI` with `tau = dt`; the Conv2d's bias is
        // in `lif1`'s `v_leak` (not compared: the original conv has it, not the LIF).
        ("conv", &[("lif2", "LIF")]),
        ("cubalif", &[("cuba", "CubaLIF")]),
        ("threshold", &[("li", "LI"), ("th", "Threshold"), ("lif", "LIF"), ("th2", "Threshold")]),
    ];
    for (name, nodes) in cases {
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("json")).expect("parses");
        let dt = reference["dt"].as_f64().expect("dt");
        let file = dir.join(format!("{name}.nir"));
        let original = snnc::cli::nir::read_graph(&file).expect("reads");
        let first = snnc::cli::nir::import_file(&file, Some(dt)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let graph = export::export(&first.module, &first.params, dt, &export::Hints::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The `Affine` biases in front of `lif` and `th2` are in their `v_leak` and threshold.
        let biases: std::collections::BTreeMap<&str, &Array> = original
            .edges
            .iter()
            .filter(|(from, _)| original.nodes[from].kind == "Affine")
            .map(|(from, to)| (to.as_str(), original.nodes[from].array("bias").expect("bias")))
            .collect();
        for (node, kind) in nodes {
            let (ours, theirs) = (&graph.nodes[*node], &original.nodes[*node]);
            assert_eq!(ours.kind, *kind, "{name}: {node}");
            for (param, value) in &theirs.params {
                let Value::Array(theirs) = value else { continue };
                let ours = ours.array(param).unwrap_or_else(|| panic!("{name}: {node} has no {param}"));
                assert_eq!(ours.shape, theirs.shape, "{name}: {node}.{param}");
                let bias = biases.get(node).map(|b| b.data.as_slice());
                for (k, (a, b)) in ours.data.iter().zip(&theirs.data).enumerate() {
                    let want = match (param.as_str(), bias) {
                        ("v_leak", Some(bias)) => b + theirs_r(&original.nodes[*node], k) * bias[k],
                        ("threshold", Some(bias)) => b - bias[k],
                        // Not folded: the same number to the bit.
                        _ => {
                            assert_eq!(a.to_bits(), b.to_bits(), "{name}: {node}.{param}[{k}]: {a} vs {b}");
                            continue;
                        }
                    };
                    assert!((a - want).abs() <= 1e-12 * (1.0 + want.abs()), "{name}: {node}.{param}[{k}]: {a} vs {want}");
                }
            }
        }
        let path = tmp("python_round_trip").join(format!("{name}.nir"));
        std::fs::write(&path, hdf5::write(&graph).expect("writes")).expect("written");
        let second = snnc::cli::nir::import_file(&path, Some(dt)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(first.text, second.text, "{name}: the text");
        assert_eq!(first.module, second.module, "{name}: the IR");
        assert_eq!(first.params.weights, second.params.weights, "{name}: weights");
        assert_eq!(first.params.neuron_params, second.params.neuron_params, "{name}: neuron parameters");
        let input: Vec<f32> = reference["input"].as_array().expect("input").iter().map(|v| v.as_f64().expect("number") as f32).collect();
        let shorten = |mut m: Module| {
            m.steps = 40;
            valid(m)
        };
        let (a, b) = (shorten(first.module), shorten(second.module));
        let (before, after) = (run_oracle(&a, &first.params, &input), run_oracle(&b, &second.params, &input));
        assert!((0..before.spikes.len()).any(|p| (0..before.spikes[p].len()).any(|k| before.spikes[p].get(k))), "{name}: no spikes");
        assert_eq!(before.spikes, after.spikes, "{name}: spikes");
        assert_eq!(before.states, after.states, "{name}: states");
    }
}

/// Neuron `k`'s `r` of a NIR node.
fn theirs_r(node: &Node, k: usize) -> f64 {
    let r = node.array("r").expect("r");
    r.data.get(k).copied().unwrap_or(r.data[0])
}

/// Neurons written in a model, recognised by their updates: snnTorch's `Synaptic` (a current
/// first) is a NIR `CubaLIF`, an integrator with a reset an `IF`, one without an `I` whose
/// constant input is the bias of the `Affine` that feeds it, a neuron whose state is a scaled
/// copy of its input a `Threshold`. The graph loads in `nir.read` with those types and
/// shapes, and imports to a model with the same spikes.
#[test]
fn written_neurons_export_as_cubalif_if_i_and_threshold() {
    let text = "import std::encoders

/// snnTorch's Synaptic with a reset to zero.
neuron Synaptic {
    param alpha = 0.8
    param beta = 0.9
    param threshold = 1
    state syn = 0
    state v = 0
    input i
    update {
        syn = alpha * syn + i
        v = beta * v + syn
    }
    spike when v > threshold
    on spike { v = 0 }
}

neuron Gate {
    param threshold = 0.3
    state v = 0
    input i
    update { v = 2 * i - 0.1 }
    spike when v > threshold
}

neuron Integrate {
    param r = 2
    state v = 0
    input i
    update { v = v + r * i }
    spike when v > 1
    on spike { v = -0.1 }
}

neuron Count {
    state v = 0
    input i
    update { v = v + 0.5 * i + 0.1 }
}

/// Synaptic without spikes.
neuron Current {
    state syn = 0
    state v = 0
    input i
    update {
        syn = 0.5 * syn + i
        v = 0.75 * v + 0.25 * syn + 0.05
    }
}

network Written {
    dt = 1 ms
    steps = 30
    input x[4] = repeat(sample)
    population syn[5] = Synaptic
    population gate[6] = Gate
    population integ[3] = Integrate
    population count[2] = Count
    population current[2] = Current
    connect x -> syn : dense(init = uniform(0, 0.6))
    connect x -> gate : dense(init = uniform(-1, 1))
    connect gate -> integ : dense(init = uniform(0, 0.5))
    connect syn -> count : dense(init = uniform(0, 1))
    connect count.v -> current : dense(init = uniform(-1, 1))
}
";
    let dir = tmp("written");
    let path = dir.join("written.snn");
    std::fs::write(&path, text).expect("written");
    let graph = snnc::cli::nir::export_graph(&path, None, None).expect("exports");
    let close = |node: &str, param: &str, want: f64| {
        let array = graph.nodes[node].array(param).unwrap_or_else(|| panic!("{node}.{param}"));
        for got in &array.data {
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{node}.{param}: {got}, not {want}");
        }
    };
    assert_eq!(graph.nodes["syn"].kind, "CubaLIF");
    // tau_syn = dt / (1 - alpha), w_in = tau_syn / dt, tau_mem = dt / (1 - beta), r = tau_mem / dt.
    for (param, want) in
        [("tau_syn", 0.005), ("w_in", 5.0), ("tau_mem", 0.01), ("r", 10.0), ("v_leak", 0.0), ("v_threshold", 1.0), ("v_reset", 0.0)]
    {
        close("syn", param, want);
    }
    assert_eq!(graph.nodes["gate"].kind, "Threshold");
    close("gate", "threshold", 0.2);
    assert_eq!(graph.nodes["integ"].kind, "IF");
    for (param, want) in [("r", 2000.0), ("v_threshold", 1.0), ("v_reset", -0.1)] {
        close("integ", param, want);
    }
    assert_eq!(graph.nodes["count"].kind, "I");
    close("count", "r", 500.0);
    let feeding: Vec<&Node> = graph.edges.iter().filter(|(_, to)| to == "count").map(|(from, _)| &graph.nodes[from]).collect();
    assert!(
        matches!(feeding.as_slice(), [n] if n.kind == "Affine" && n.array("bias").is_some_and(|b| b.shape == [2] && b.data.iter().all(|v| (v - 0.2).abs() < 1e-12)))
    );
    assert_eq!(graph.nodes["current"].kind, "CubaLI");
    for (param, want) in [("tau_syn", 0.002), ("w_in", 2.0), ("tau_mem", 0.004), ("r", 1.0), ("v_leak", 0.2)] {
        close("current", param, want);
    }
    let file = dir.join("written.nir");
    std::fs::write(&file, hdf5::write(&graph).expect("writes")).expect("written");

    // Back in: the same spikes (the written-out neurons compute the same steps in another
    // order: the membranes agree to rounding).
    let imported = snnc::cli::nir::import_file(&file, None).expect("imports");
    for neuron in ["neuron NirCubaLIF", "neuron NirThreshold", "neuron NirIF", "neuron NirI", "neuron NirCubaLI"] {
        assert!(imported.text.contains(neuron), "{neuron}: {}", imported.text);
    }
    let original = snnc::cli::driver::check_path(&path).expect("reads").outcome.module.expect("lowers");
    let params = init_params::<f64>(&original, 0);
    assert_eq!(params.weights, imported.params.weights);
    let (a, b) = (valid(original), valid(imported.module));
    let x = [0.9f32, 0.2, 0.7, 0.4];
    let (before, after) = (run_oracle(&a, &params, &x), run_oracle(&b, &imported.params, &x));
    for (p, pop) in a.populations.iter().enumerate() {
        let q = b.populations.iter().position(|other| other.name == pop.name).expect("the same population");
        assert_eq!(before.spikes[p], after.spikes[q], "{}: spikes", pop.name);
        if pop.name == "gate" {
            continue; // its state is 2 i - 0.1 here, the input itself in NirThreshold
        }
        let (v, w) = (pop.var_by_name("v").expect("v").0 as usize, b.populations[q].var_by_name("v").expect("v").0 as usize);
        for (x, y) in before.states[p][v].iter().zip(&after.states[q][w]) {
            assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs()), "{}.v: {x} vs {y}", pop.name);
        }
    }
    let spiking = ["syn", "gate", "integ"].map(|name| {
        let p = a.populations.iter().position(|pop| pop.name == name).expect("population");
        (0..before.spikes[p].len()).filter(|k| before.spikes[p].get(*k)).count()
    });
    assert!(spiking.iter().all(|n| *n > 0), "every spiking population must spike for the comparison: {spiking:?}");

    if let Some(read) = read_back(&file, "written_neurons_export_as_cubalif_if_i_and_threshold (its nir.read part)") {
        let nodes = &read["nodes"];
        for (name, kind) in [("syn", "CubaLIF"), ("gate", "Threshold"), ("integ", "IF"), ("count", "I"), ("current", "CubaLI")] {
            assert_eq!(nodes[name]["type"], kind, "{name}");
        }
        for param in ["tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"] {
            assert_eq!(nodes["syn"]["shapes"][param], serde_json::json!([5]), "syn.{param}");
        }
        assert_eq!(nodes["gate"]["shapes"]["threshold"], serde_json::json!([6]));
        let affine = graph.edges.iter().find(|(_, to)| to == "count").map(|(from, _)| from.as_str()).expect("an edge");
        assert_eq!(nodes[affine]["type"], "Affine");
        assert_eq!(nodes[affine]["shapes"]["bias"], serde_json::json!([2]));
        assert_eq!(nodes[affine]["shapes"]["weight"], serde_json::json!([2, 5]));
    }
}

/// An `LI` -> `Threshold` -> `Scale` loop that is not snnTorch's `Leaky` (here: an `Affine`
/// with a bias feeds the `LI`) imports as its nodes: the LI with the bias in `v_leak`, a
/// threshold population reading its membrane in the same step, and the `Scale` closing the
/// loop with the previous step's spikes (`feedback`). It simulates as NIR's equations say.
#[test]
fn a_loop_through_a_threshold_that_is_not_leaky_imports_as_its_nodes() {
    let (dt, tau, threshold) = (1e-3, 4e-3, 0.5);
    let w = [0.9, 0.3, -0.2, 1.1];
    let bias = [0.15, 0.05];
    let mut graph = Graph::default();
    let two = |v: f64| Array::full(&[2], v);
    graph.nodes.insert("x".into(), Node::new("Input").with("shape", Array::new(vec![1], vec![2.0])));
    graph.nodes.insert(
        "fc".into(),
        Node::new("Affine").with("weight", Array::new(vec![2, 2], w.to_vec())).with("bias", Array::new(vec![2], bias.to_vec())),
    );
    graph.nodes.insert("li".into(), Node::new("LI").with("tau", two(tau)).with("r", two(tau / dt)).with("v_leak", two(0.0)));
    graph.nodes.insert("fire".into(), Node::new("Threshold").with("threshold", two(threshold)));
    graph.nodes.insert("reset".into(), Node::new("Scale").with("scale", two(-threshold)));
    graph.nodes.insert("out".into(), Node::new("Output").with("shape", Array::new(vec![1], vec![2.0])));
    graph.edges = [("x", "fc"), ("fc", "li"), ("li", "fire"), ("fire", "reset"), ("reset", "li"), ("fire", "out")]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .to_vec();
    let path = tmp("threshold_loop").join("loop.nir");
    std::fs::write(&path, hdf5::write(&graph).expect("writes")).expect("written");
    let imported = snnc::cli::nir::import_file(&path, Some(dt)).expect("imports");
    assert!(imported.text.contains("population fire[2] = NirThreshold(threshold = 0.5)"), "{}", imported.text);
    assert!(imported.text.contains("connect fire -> li : one_to_one feedback"), "{}", imported.text);
    let mut module = imported.module;
    module.steps = 30;
    let m = valid(module);
    let x = [0.8f32, 0.6];
    let trace = run_oracle(&m, &imported.params, &x);
    let (li, spike) = (
        m.populations.iter().position(|p| p.name == "li").expect("li"),
        m.populations.iter().position(|p| p.name == "fire").expect("fire"),
    );
    let v_index = m.populations[li].var_by_name("v").expect("v").0 as usize;
    let (mut v, mut s) = ([0.0f64; 2], [false; 2]);
    let mut count = 0;
    for t in 0..30 {
        for k in 0..2 {
            let input = w[2 * k] * f64::from(x[0]) + w[2 * k + 1] * f64::from(x[1]) + bias[k] - threshold * f64::from(u8::from(s[k]));
            v[k] += dt / tau * (0.0 - v[k] + tau / dt * input);
        }
        s = [v[0] > threshold, v[1] > threshold];
        for k in 0..2 {
            let got = trace.states[li][v_index][(t + 1) * trace.row(li) + k];
            assert!((got - v[k]).abs() <= 1e-9 * (1.0 + v[k].abs()), "li.v step {t} neuron {k}: {got} vs {}", v[k]);
            assert_eq!(trace.spikes[spike].get(t * trace.row(spike) + k), s[k], "spike step {t} neuron {k}");
            count += usize::from(s[k]);
        }
    }
    assert!(count > 3, "the loop must spike and reset: {count} spikes");
}
