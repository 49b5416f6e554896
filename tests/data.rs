//! The data readers on small files the tests write: MNIST and Fashion-MNIST from IDX files (gz
//! and raw), N-MNIST's event files (read event by event, binned into steps, run through a
//! network on both engines, and through `snnc run`), the coded diagnostics for missing,
//! corrupt and unreadable files (in the library and from the command line), and the real MNIST
//! files when SNNC_MNIST_DIR is set (CI sets it).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use snnc::data::{
    DataError, Event, NMNIST_ELEMENTS, load_fashion_mnist, load_mnist, load_nmnist, parse_nmnist_events, resolve_dir, write_idx,
    write_nmnist_events,
};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("snnc-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_set(dir: &Path, gz: bool, n_train: usize, n_test: usize) {
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let pixels: Vec<u8> = (0..n * 4).map(|i| (i * 37 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        for (kind, bytes) in [("images-idx3-ubyte", write_idx(&[n, 2, 2], &pixels)), ("labels-idx1-ubyte", write_idx(&[n], &labels))] {
            let name = format!("{prefix}-{kind}");
            if gz {
                let file = std::fs::File::create(dir.join(format!("{name}.gz"))).expect("create");
                let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
                encoder.write_all(&bytes).expect("write");
                encoder.finish().expect("finish");
            } else {
                std::fs::write(dir.join(name), bytes).expect("write");
            }
        }
    }
}

#[test]
fn reads_generated_idx_files_gz_and_raw() {
    for gz in [true, false] {
        let dir = temp_dir(if gz { "gz" } else { "raw" });
        write_set(&dir, gz, 6, 3);
        let set = load_mnist(&dir).expect("loads");
        assert_eq!((set.train.len(), set.test.len(), set.train.n_features), (6, 3, 4));
        assert_eq!(set.train.labels, [0, 1, 2, 3, 4, 5]);
        // Sample 1 starts at pixel 4 of the file, written as 4 * 37 = 148.
        assert_eq!(set.train.sample(1)[0], 148.0 / 255.0);
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn missing_files_name_what_was_expected_and_where() {
    let dir = temp_dir("missing");
    let error = load_mnist(&dir).unwrap_err();
    assert!(matches!(error, DataError::Missing { .. }));
    let message = error.to_string();
    assert!(message.contains("train-images-idx3-ubyte.gz"), "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("SNNC_MNIST_DIR"), "{message}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn corrupt_files_are_reported_not_panicked_on() {
    let dir = temp_dir("corrupt");
    write_set(&dir, false, 4, 2);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), write_idx(&[3], &[1, 2, 3])).expect("write");
    let message = load_mnist(&dir).unwrap_err().to_string();
    assert!(message.contains("3 labels for 4 images"), "{message}");
    std::fs::write(dir.join("train-images-idx3-ubyte"), b"not an idx file").expect("write");
    assert!(matches!(load_mnist(&dir).unwrap_err(), DataError::Corrupt { .. }));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_data_folder_resolves_override_then_variable_then_default() {
    let lookup = |var: &str| (var == "SET").then(|| "/from/env".to_string());
    assert_eq!(resolve_dir("$SET|data/mnist", None, lookup), PathBuf::from("/from/env"));
    assert_eq!(resolve_dir("$UNSET|data/mnist", None, lookup), PathBuf::from("data/mnist"));
    assert_eq!(resolve_dir("$SET|data/mnist", Some(Path::new("/cli")), lookup), PathBuf::from("/cli"));
}

#[test]
fn the_real_mnist_files_when_available() {
    let Some(dir) = std::env::var_os("SNNC_MNIST_DIR") else {
        eprintln!("SNNC_MNIST_DIR is not set; the real-file check runs in CI");
        return;
    };
    let set = load_mnist(Path::new(&dir)).expect("the real MNIST loads");
    assert_eq!((set.train.len(), set.test.len(), set.train.n_features), (60_000, 10_000, 784));
    let mut counts = [0usize; 10];
    for label in &set.test.labels {
        counts[usize::from(*label)] += 1;
    }
    assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
}

// ---------------------------------------------------------------- coded diagnostics, IDX sets

fn snnc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(common::root()).output().expect("snnc runs")
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The message's first line starts with the code, and a `help:` line follows.
fn assert_coded(message: &str, code: &str) {
    assert!(message.starts_with(&format!("{code}: ")), "{message}");
    assert!(message.lines().nth(1).is_some_and(|l| l.trim_start().starts_with("help: ")), "{message}");
}

#[test]
fn missing_idx_files_are_coded_and_name_the_four_files_and_the_variable() {
    let dir = temp_dir("missing-coded");
    for (error, variable) in
        [(load_mnist(&dir).unwrap_err(), "SNNC_MNIST_DIR"), (load_fashion_mnist(&dir).unwrap_err(), "SNNC_FASHION_MNIST_DIR")]
    {
        let message = error.to_string();
        assert_coded(&message, "snn::data::missing");
        let help = message.lines().nth(1).expect("help");
        for file in snnc::data::IDX_FILES {
            assert!(help.contains(file), "{message}");
        }
        assert!(help.contains(variable) && help.contains("--data"), "{message}");
    }
    assert!(load_fashion_mnist(&dir).unwrap_err().to_string().contains("Fashion-MNIST training images"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn corrupt_and_unreadable_idx_files_are_coded() {
    let dir = temp_dir("corrupt-coded");
    write_set(&dir, false, 4, 2);
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), b"\x00\x00\x08\x03short").expect("write");
    let message = load_fashion_mnist(&dir).unwrap_err().to_string();
    assert_coded(&message, "snn::data::corrupt");
    assert!(message.contains("t10k-images-idx3-ubyte") && message.contains("shorter than its header"), "{message}");
    // A folder where a file should be cannot be read.
    std::fs::remove_file(dir.join("t10k-images-idx3-ubyte")).expect("remove");
    std::fs::create_dir(dir.join("t10k-images-idx3-ubyte.gz")).expect("a folder in the file's place");
    let error = load_mnist(&dir).unwrap_err();
    assert!(matches!(error, DataError::Io { .. }));
    assert_coded(&error.to_string(), "snn::data::unreadable");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn fashion_mnist_reads_the_same_idx_files() {
    let dir = temp_dir("fashion");
    write_set(&dir, true, 5, 2);
    let set = load_fashion_mnist(&dir).expect("loads");
    assert_eq!(set, load_mnist(&dir).expect("the same files read as MNIST"));
    assert_eq!((set.train.len(), set.test.len(), set.classes), (5, 2, 10));
    assert_eq!(set.test.labels, [0, 1]);
    assert_eq!(set.train.sample(2)[3], ((11 * 37) % 256) as f32 / 255.0);
    std::fs::remove_dir_all(dir).ok();
}

/// A Fashion-MNIST folder of 28 x 28 images, `n` per split.
fn write_images(dir: &Path, n: usize) {
    for prefix in ["train", "t10k"] {
        let pixels: Vec<u8> = (0..n * 784).map(|i| (i * 31 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), write_idx(&[n, 28, 28], &pixels)).expect("write");
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), write_idx(&[n], &labels)).expect("write");
    }
}

#[test]
fn snnc_reports_missing_data_with_its_code_and_runs_fashion_mnist_on_small_files() {
    let empty = temp_dir("cli-empty");
    let empty_text = empty.to_string_lossy().into_owned();
    let out = temp_dir("cli-out");
    let out_text = out.to_string_lossy().into_owned();
    for (model, expected) in [
        ("models/fashion_mnist.snn", vec!["snn::data::missing", "Fashion-MNIST training images", "SNNC_FASHION_MNIST_DIR"]),
        ("models/snntorch_tutorial5.snn", vec!["snn::data::missing", "MNIST training images", "SNNC_MNIST_DIR"]),
        ("models/nmnist.snn", vec!["snn::data::missing", "Train/<digit>/<id>.bin", "SNNC_NMNIST_DIR"]),
    ] {
        let run = snnc(&["run", model, "--data", &empty_text, "--out", &out_text]);
        assert!(!run.status.success(), "{model}: {}", text(&run));
        let shown = text(&run);
        for part in expected {
            assert!(shown.contains(part), "{model}: `{part}` in\n{shown}");
        }
        assert!(shown.contains("\n  help: "), "{shown}");
    }
    let check = snnc(&["check", "models/fashion_mnist.snn", "models/nmnist.snn"]);
    assert!(check.status.success(), "{}", text(&check));
    write_images(&empty, 6);
    let run = snnc(&["run", "models/fashion_mnist.snn", "--data", &empty_text, "--set", "steps=3", "--out", &out_text, "--epochs", "1"]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(out.join("metrics.json").exists());
    std::fs::remove_dir_all(empty).ok();
    std::fs::remove_dir_all(out).ok();
}

// ---------------------------------------------------------------- N-MNIST

fn event(x: u8, y: u8, on: bool, t_us: u32) -> Event {
    Event { x, y, on, t_us }
}

/// The element an event drives: polarity-major [2, 34, 34].
fn element(x: u16, y: u16, on: bool) -> u16 {
    u16::from(on) * 34 * 34 + y * 34 + x
}

/// A tiny N-MNIST folder: three training samples (digits 0, 0, 3; the second with an overflow
/// marker, the third empty) and one test sample (digit 7).
fn write_nmnist(dir: &Path) {
    let first =
        [event(0, 0, false, 0), event(33, 33, true, 999), event(5, 7, true, 1000), event(5, 7, true, 1500), event(2, 1, false, 2999)];
    let mut second = write_nmnist_events(&[event(1, 1, true, 10)]);
    second.extend_from_slice(&[0, 240, 0, 0, 0]);
    second.extend(write_nmnist_events(&[event(1, 2, false, 5)]));
    let files: [(&str, Vec<u8>); 4] = [
        ("Train/0/00001.bin", write_nmnist_events(&first)),
        ("Train/0/00002.bin", second),
        ("Train/3/00001.bin", Vec::new()),
        ("Test/7/00004.bin", write_nmnist_events(&[event(10, 20, true, 4000)])),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("folders");
        std::fs::write(path, bytes).expect("write");
    }
    // Other files in a digit's folder are not samples.
    std::fs::write(dir.join("Train/0/README.txt"), "not a sample").expect("write");
}

#[test]
fn event_files_round_trip_bit_by_bit() {
    let events = [event(0, 0, false, 0), event(33, 12, true, (1 << 23) - 1), event(7, 33, false, 0x01_02_03)];
    let bytes = write_nmnist_events(&events);
    // Byte 2 holds the polarity in bit 7 and the time's bits 22..16 below it.
    assert_eq!(&bytes[5..10], &[33, 12, 0xff, 0xff, 0xff]);
    assert_eq!(&bytes[10..15], &[7, 33, 0x01, 0x02, 0x03]);
    assert_eq!(parse_nmnist_events(&bytes).expect("parses"), events);
    assert!(parse_nmnist_events(&bytes[..14]).unwrap_err().contains("14 bytes"));
    assert!(parse_nmnist_events(&[34, 0, 0, 0, 0]).unwrap_err().contains("outside the 34 x 34 sensor"));
}

#[test]
fn a_small_nmnist_folder_loads_event_by_event_and_bins_into_steps() {
    let dir = temp_dir("nmnist");
    write_nmnist(&dir);
    let set = load_nmnist(&dir, 1000.0, None).expect("loads");
    assert_eq!((set.train.len(), set.test.len(), set.classes, set.train.n_features), (3, 1, 10, NMNIST_ELEMENTS));
    assert_eq!(set.train.labels, [0, 0, 3]);
    assert_eq!(set.test.labels, [7]);
    let on = |x, y| element(x, y, true);
    let off = |x, y| element(x, y, false);
    assert_eq!(set.train.events(0), [(0, off(0, 0)), (999, on(33, 33)), (1000, on(5, 7)), (1500, on(5, 7)), (2999, off(2, 1))]);
    // The overflow marker is no event; the events after it are 2^13 us later.
    assert_eq!(set.train.events(1), [(10, on(1, 1)), (8192 + 5, off(1, 2))]);
    assert!(set.train.events(2).is_empty());
    assert_eq!(set.test.events(0), [(4000, on(10, 20))]);
    // Bins of 1 ms: three steps through the last event, counts per element.
    let n = NMNIST_ELEMENTS;
    let binned = set.train.sample(0);
    assert_eq!(binned.len(), 3 * n);
    let nonzero: Vec<(usize, f32)> = binned.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(k, v)| (k, *v)).collect();
    let at = |step: usize, e: u16| step * n + usize::from(e);
    assert_eq!(nonzero, [(at(0, off(0, 0)), 1.0), (at(0, on(33, 33)), 1.0), (at(1, on(5, 7)), 2.0), (at(2, off(2, 1)), 1.0)]);
    assert!(set.train.sample(2).is_empty(), "an empty recording has no bins");
    // Bins of 2 ms, at most one step: the first two millisecond's events, the rest dropped.
    let coarse = load_nmnist(&dir, 2000.0, Some(1)).expect("loads");
    let binned = coarse.train.sample(0);
    assert_eq!(binned.len(), n);
    assert_eq!((binned[usize::from(on(5, 7))], binned[usize::from(off(2, 1))], binned.iter().sum::<f32>()), (2.0, 0.0, 4.0));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn missing_nmnist_folders_and_damaged_files_are_coded_and_name_what_is_expected() {
    let dir = temp_dir("nmnist-missing");
    let absent = dir.join("absent");
    let message = load_nmnist(&absent, 1000.0, None).unwrap_err().to_string();
    assert_coded(&message, "snn::data::missing");
    assert!(message.contains("the N-MNIST folder") && message.contains(&absent.display().to_string()), "{message}");
    assert!(message.contains("Train/<digit>/<id>.bin") && message.contains("Test/<digit>/<id>.bin"), "{message}");
    assert!(message.contains("SNNC_NMNIST_DIR") && message.contains("--data"), "{message}");

    write_nmnist(&dir);
    std::fs::remove_dir_all(dir.join("Test")).expect("remove");
    let message = load_nmnist(&dir, 1000.0, None).unwrap_err().to_string();
    assert_coded(&message, "snn::data::missing");
    assert!(message.contains("test folder `Test`") && message.contains(&dir.join("Test").display().to_string()), "{message}");

    std::fs::create_dir_all(dir.join("Test/7")).expect("an empty digit folder");
    let message = load_nmnist(&dir, 1000.0, None).unwrap_err().to_string();
    assert_coded(&message, "snn::data::missing");
    assert!(message.contains("N-MNIST test samples") && message.contains("<id>.bin"), "{message}");

    std::fs::remove_dir_all(dir.join("Train")).expect("remove");
    let message = load_nmnist(&dir, 1000.0, None).unwrap_err().to_string();
    assert!(message.contains("training folder `Train`"), "{message}");

    write_nmnist(&dir);
    let cut = dir.join("Train/0/00002.bin");
    std::fs::write(&cut, [1, 1, 0x80, 0, 10, 1, 2]).expect("a cut-off file");
    let error = load_nmnist(&dir, 1000.0, None).unwrap_err();
    let message = error.to_string();
    assert_coded(&message, "snn::data::corrupt");
    assert!(message.contains(&cut.display().to_string()) && message.contains("7 bytes"), "{message}");

    std::fs::remove_file(&cut).expect("remove");
    std::fs::create_dir(&cut).expect("a folder in a sample's place");
    let message = load_nmnist(&dir, 1000.0, None).unwrap_err().to_string();
    assert_coded(&message, "snn::data::unreadable");
    assert!(message.contains(&cut.display().to_string()), "{message}");
    std::fs::remove_dir_all(dir).ok();
}

const EVENT_NET: &str = "import std::neurons\nimport std::encoders\nimport std::surrogates\n\n\
encoder counts(x) {\n    current = x\n}\n\n\
network Events {\n    steps = 4\n    input events[2, 34, 34] = event_spikes(events)\n    input counted[2, 34, 34] = counts(events)\n    \
population hidden[12] = Leaky(beta = 0.9, threshold = 0.5)\n    population out[10] = Leaky(beta = 0.9, threshold = 0.5)\n    \
connect events -> hidden.i : dense(init = uniform(0.2, 0.8))\n    connect counted -> hidden.i : dense(init = uniform(0.0, 0.4))\n    \
connect hidden -> out.i : dense\n}\n\n\
train {\n    data = nmnist(dir = \"unused\")\n    method = bptt(surrogate = fast_sigmoid(slope = 5))\n    \
loss ce = sum_t(cross_entropy(out.v, label))\n    predict = argmax(count(out))\n    optimizer = adam(lr = 1e-3)\n}\n";

#[test]
fn binned_events_drive_the_network_step_by_step_on_both_engines() {
    use snnc::exec::engine::{Ctx, EngineKind, ParamsAccess, Shard};
    use snnc::exec::state::{SampleRef, init_params, net_params};
    let dir = temp_dir("nmnist-engines");
    write_nmnist(&dir);
    let set = load_nmnist(&dir, 1000.0, None).expect("loads");
    let m = common::valid(common::module(EVENT_NET));
    assert!(m.inputs.iter().all(|i| i.per_step && !i.is_constant_over_time()));
    let features: Vec<Vec<f32>> = (0..3).map(|i| set.train.sample(i).into_owned()).chain([set.test.sample(0).into_owned()]).collect();
    let samples: Vec<SampleRef> = features.iter().enumerate().map(|(i, f)| SampleRef { id: i as u64, features: f }).collect();
    let params = init_params::<f64>(&m, 3);
    let net = net_params::<f64>(&m);
    let ctx = Ctx { module: &m, seed: 5, net: &net };
    let run = |kind| {
        common::build::<f64>(kind, &m).forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None)
    };
    let (oracle, jit) = (run(EngineKind::Oracle), run(EngineKind::Jit));
    assert_eq!(oracle.inputs, jit.inputs, "encoder outputs");
    assert_eq!(oracle.spikes, jit.spikes, "spike rasters");
    for (p, (a, b)) in oracle.states.iter().zip(&jit.states).enumerate() {
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs()), "population {p}: {x} vs {y}");
        }
    }
    // Step t of each sample carries the events of [t ms, t + 1 ms): a spike where there are
    // any, the count as a current; nothing once the recording is over.
    let (n, batch) = (NMNIST_ELEMENTS, samples.len());
    for t in 0..4 {
        for (b, f) in features.iter().enumerate() {
            for e in 0..n {
                let count = f.get(t * n + e).copied().unwrap_or(0.0);
                let k = t * batch * n + b * n + e;
                assert_eq!(oracle.inputs[0][k], if count > 0.0 { 1.0 } else { 0.0 }, "spike: step {t} sample {b} element {e}");
                assert_eq!(oracle.inputs[1][k], f64::from(count), "count: step {t} sample {b} element {e}");
            }
        }
    }
    let spikes_in = |t: usize| oracle.inputs[0][t * batch * n..(t + 1) * batch * n].iter().sum::<f64>();
    assert_eq!([spikes_in(0), spikes_in(1), spikes_in(2), spikes_in(3)], [3.0, 1.0, 1.0, 0.0], "step 0: two events of sample 0, one of 1");
    assert!(oracle.spikes[0].count(0..oracle.spikes[0].len()) > 0, "the events make the hidden layer spike");
    // The gradients through the event inputs agree too.
    let labels = [0, 0, 3, 7];
    let examples = common::examples(&features, &labels);
    let gradients = |kind| common::gradients(&m, common::build::<f64>(kind, &m).as_ref(), &params, &examples, 2).1;
    let nonzero = common::assert_weights_close("event inputs", &gradients(EngineKind::Oracle), &gradients(EngineKind::Jit), 1e-9);
    assert!(nonzero > 0, "the gradient is not trivially zero");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn snnc_runs_the_nmnist_model_on_a_small_folder() {
    let dir = temp_dir("nmnist-cli");
    write_nmnist(&dir);
    let out = temp_dir("nmnist-cli-out");
    let (dir_text, out_text) = (dir.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let run = snnc(&["run", "models/nmnist.snn", "--data", &dir_text, "--set", "steps=5", "--epochs", "1", "--out", &out_text]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(out.join("metrics.json").exists() && out.join("checkpoint.safetensors").exists());
    // The same checkpoint evaluates; the generative check refuses events (it decodes images).
    let checkpoint = out.join("checkpoint.safetensors").to_string_lossy().into_owned();
    let eval = snnc(&["eval", "models/nmnist.snn", "--checkpoint", &checkpoint, "--data", &dir_text, "--set", "steps=5"]);
    assert!(eval.status.success() && text(&eval).contains("test accuracy"), "{}", text(&eval));
    let generate = snnc(&["generate", "models/nmnist.snn", "--checkpoint", &checkpoint, "--data", &dir_text, "--out", &out_text]);
    assert!(!generate.status.success() && text(&generate).contains("event data set"), "{}", text(&generate));
    // A cut-off sample stops the run with the file's name.
    std::fs::write(dir.join("Test/7/00004.bin"), [1, 2, 3]).expect("write");
    let run = snnc(&["run", "models/nmnist.snn", "--data", &dir_text, "--set", "steps=5", "--out", &out_text]);
    assert!(!run.status.success());
    assert!(text(&run).contains("snn::data::corrupt") && text(&run).contains("00004.bin"), "{}", text(&run));
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn data_settings_lower_with_their_folders_augmentation_and_bin() {
    use snnc::ir::train::Data;
    let lowered = |data: &str, input: &str| {
        let text = EVENT_NET
            .replace("data = nmnist(dir = \"unused\")", &format!("data = {data}"))
            .replace("steps = 4\n", "steps = 4\n    dt = 0.5 ms\n")
            .replace("input events[2, 34, 34] = event_spikes(events)\n    input counted[2, 34, 34] = counts(events)", input)
            .replace("connect counted -> hidden.i : dense(init = uniform(0.0, 0.4))\n    ", "");
        common::module(&text).train.expect("a train block").data
    };
    let events = "input events[2, 34, 34] = event_spikes(events)";
    let image = "input events[784] = bernoulli(image)";
    assert_eq!(lowered("nmnist()", events), Data::Nmnist { dir: "$SNNC_NMNIST_DIR|data/nmnist".into(), bin: 0.0005 }, "bin defaults to dt");
    assert_eq!(lowered("nmnist(dir = \"here\", bin = 5 ms)", events), Data::Nmnist { dir: "here".into(), bin: 0.005 });
    assert_eq!(
        lowered("fashion_mnist(shift = 0.1, rotate = 10)", image),
        Data::FashionMnist { dir: "$SNNC_FASHION_MNIST_DIR|data/fashion_mnist".into(), augment_shift: 0.1, augment_rotate_deg: 10.0 }
    );
    assert_eq!(
        lowered("mnist()", image),
        Data::Mnist { dir: "$SNNC_MNIST_DIR|data/mnist".into(), augment_shift: 0.0, augment_rotate_deg: 0.0 }
    );
}

/// The real Fashion-MNIST and N-MNIST when their variables are set (CI has neither: the files
/// are a download; the tests above cover the readers on files they write).
#[test]
fn the_real_fashion_mnist_and_nmnist_files_when_available() {
    let test_counts = |labels: &[u8]| {
        let mut counts = [0usize; 10];
        labels.iter().for_each(|l| counts[usize::from(*l)] += 1);
        counts
    };
    match std::env::var_os("SNNC_FASHION_MNIST_DIR") {
        Some(dir) => {
            let set = load_fashion_mnist(Path::new(&dir)).expect("the real Fashion-MNIST loads");
            assert_eq!((set.train.len(), set.test.len(), set.train.n_features), (60_000, 10_000, 784));
            assert_eq!(test_counts(&set.test.labels), [1000; 10], "Fashion-MNIST's test set is balanced");
        }
        None => eprintln!("SNNC_FASHION_MNIST_DIR is not set; the real Fashion-MNIST check is skipped"),
    }
    match std::env::var_os("SNNC_NMNIST_DIR") {
        Some(dir) => {
            let set = load_nmnist(Path::new(&dir), 1000.0, None).expect("the real N-MNIST loads");
            assert_eq!((set.train.len(), set.test.len()), (60_000, 10_000));
            // N-MNIST recorded MNIST's own test digits.
            assert_eq!(test_counts(&set.test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
            let events = set.test.events(0);
            assert!(events.len() > 100 && events.iter().all(|(t, e)| *t < 400_000 && usize::from(*e) < NMNIST_ELEMENTS));
        }
        None => eprintln!("SNNC_NMNIST_DIR is not set; the real N-MNIST check is skipped"),
    }
}
