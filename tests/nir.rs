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
    let before = forward(build::<f64>(EngineKind::Oracle, &a).as_ref(), &a, &params, &samples);
    let after = forward(build::<f64>(EngineKind::Oracle, &b).as_ref(), &b, &imported.params, &samples);
    assert!((0..before.spikes[0].len()).any(|k| before.spikes[0].get(k)), "the comparison needs spikes");
    assert_eq!(before.spikes, after.spikes);
    assert_eq!(before.states, after.states);
    match python() {
        Ok(python) => {
            let out = Command::new(&python).arg(root().join("tests/nir_py/read_back.py")).arg(&file).output().expect("python runs");
            assert!(out.status.success(), "nir.read failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Err(why) => skip("delays_and_loops_go_through_nir_delay_nodes (its nir.read part)", &why),
    }
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
    let before = forward(build::<f64>(EngineKind::Jit, &a).as_ref(), &a, &params, &samples);
    let after = forward(build::<f64>(EngineKind::Jit, &b).as_ref(), &b, &imported.params, &samples);
    for p in 0..2 {
        assert!((0..before.spikes[p].len()).any(|k| before.spikes[p].get(k)), "population {p} must spike for the comparison");
    }
    assert_eq!(before.spikes, after.spikes);
    assert_eq!(before.states, after.states);
    match python() {
        Ok(python) => {
            let out = Command::new(&python).arg(root().join("tests/nir_py/read_back.py")).arg(&file).output().expect("python runs");
            assert!(out.status.success(), "nir.read failed: {}", String::from_utf8_lossy(&out.stderr));
            let read: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            let nodes = read["nodes"].as_object().expect("nodes");
            let conv1d = nodes.values().find(|n| n["type"] == "Conv1d").expect("a Conv1d");
            assert_eq!(conv1d["shapes"]["weight"], serde_json::json!([3, 2, 3]));
            let conv2d = nodes.values().find(|n| n["type"] == "Conv2d").expect("a Conv2d");
            assert_eq!(conv2d["shapes"]["weight"], serde_json::json!([2, 1, 3, 2]));
        }
        Err(why) => skip("one_dimensional_and_rectangular_convolutions_go_through_nir (its nir.read part)", &why),
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
        ("conv", "population pool[2, 3, 3] = NirRelay"),
        ("recurrent", "connect lif -> lif : dense feedback"),
        ("subgraph", "connect layer_lif -> layer_lif : dense feedback"),
        ("conv1d", "connect input_ -> lif1 : conv1d(kernel = 3, stride = 2, padding = 1)"),
        ("conv_rect", "connect input_ -> lif2 : conv2d(kernel = [2, 3], stride = [1, 2], padding = [1, 0])"),
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
            for (t, (row_v, row_s)) in
                expected["v"].as_array().expect("v").iter().zip(expected["spikes"].as_array().expect("spikes")).enumerate()
            {
                for k in 0..size {
                    let want = row_v[k].as_f64().expect("number");
                    let got = trace.states[p][v][(t + 1) * trace.row(p) + k];
                    assert!(
                        (want - got).abs() <= 1e-9 * (1.0 + want.abs()),
                        "{name}: {pop_name}.v step {t} neuron {k}: NumPy {want}, snnc {got}"
                    );
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
    let python = match python() {
        Ok(python) => python,
        Err(why) => return skip("a_file_snnc_writes_loads_in_python_nir", &why),
    };
    let graph = snnc::cli::nir::export_graph(&root().join("models/yin_yang.snn"), None, None).expect("exports");
    let file = tmp("read_back").join("yin_yang.nir");
    std::fs::write(&file, hdf5::write(&graph).expect("writes")).expect("written");
    let out = Command::new(&python).arg(root().join("tests/nir_py/read_back.py")).arg(&file).output().expect("python runs");
    assert!(out.status.success(), "nir.read failed: {}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
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
    // Unsupported on import: a Threshold that is not a Leaky reset, a delay; on export: a
    // neuron NIR has no node for.
    let mut graph = small_graph();
    graph.nodes.insert("th".into(), Node::new("Threshold").with("threshold", Array::full(&[3], 0.5)));
    graph.edges.push(("lif".into(), "th".into()));
    expect(nir::UNSUPPORTED, code_of(import_bytes(&graph, Some(1e-3))));
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
    expect(nir::UNSUPPORTED, export::export(&eventprop, &params, eventprop.dt, &export::Hints::default()).expect_err("CubaLIF").code);
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
