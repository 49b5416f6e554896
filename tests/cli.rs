//! The command line end to end: `snnc run` writes metrics and a checkpoint, `snnc eval` reads
//! the checkpoint back and reports the same accuracy on the engine it is given, `--set`
//! reaches the run (and is refused when it names nothing), checkpoints round-trip in both
//! precisions.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn snnc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(common::root()).output().expect("snnc runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("snnc-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn last_test_accuracy(out: &std::path::Path) -> f64 {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).expect("metrics.json")).expect("JSON");
    json.as_array().expect("epochs").last().expect("an epoch")["test_accuracy"].as_f64().expect("a number")
}

#[test]
fn run_then_eval_reports_the_same_accuracy_on_either_engine() {
    let out = scratch("run");
    let out_text = out.to_string_lossy().into_owned();
    let run = snnc(&["run", "models/yin_yang.snn", "--epochs", "2", "--limit-train", "512", "--limit-test", "200", "--out", &out_text]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(out.join("checkpoint.safetensors").exists() && out.join("metrics.csv").exists());
    let accuracy = last_test_accuracy(&out);
    assert!(accuracy > 0.5, "two short epochs learn something: {accuracy}");
    let checkpoint = out.join("checkpoint.safetensors").to_string_lossy().into_owned();
    for engine in ["jit", "interp"] {
        let eval = snnc(&["eval", "models/yin_yang.snn", "--checkpoint", &checkpoint, "--limit-test", "200", "--backend", engine]);
        assert!(eval.status.success(), "{}", text(&eval));
        let expected = format!("test accuracy {:.2}% on 200 samples", 100.0 * accuracy);
        assert!(text(&eval).contains(&expected), "{engine}: expected `{expected}` in\n{}", text(&eval));
    }
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn set_reaches_the_run_and_unknown_settings_are_refused() {
    let out = scratch("set");
    let out_text = out.to_string_lossy().into_owned();
    let run = snnc(&[
        "run",
        "models/yin_yang.snn",
        "--set",
        "steps=3",
        "--set",
        "lr=0.01",
        "--epochs",
        "1",
        "--limit-train",
        "64",
        "--limit-test",
        "32",
        "--out",
        &out_text,
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("3 steps"), "{}", text(&run));
    let json = std::fs::read_to_string(out.join("metrics.json")).expect("metrics");
    assert!(json.contains("\"lr\": 0.01"), "{json}");
    let bad = snnc(&["run", "models/yin_yang.snn", "--set", "stpes=3", "--out", &out_text]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("did you mean `steps`"), "{}", text(&bad));
    let not_a_number = snnc(&["run", "models/yin_yang.snn", "--set", "steps=many", "--out", &out_text]);
    assert!(!not_a_number.status.success() && text(&not_a_number).contains("not a number"), "{}", text(&not_a_number));
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn f64_runs_and_the_oracle_runs_from_the_command_line() {
    let out = scratch("precision");
    let out_text = out.to_string_lossy().into_owned();
    for extra in [["--precision", "f64"], ["--backend", "interp"]] {
        let mut args = vec!["run", "models/yin_yang.snn", "--epochs", "1", "--limit-train", "64", "--limit-test", "32", "--out", &out_text];
        args.extend(extra);
        let run = snnc(&args);
        assert!(run.status.success(), "{extra:?}: {}", text(&run));
    }
    let cuda = snnc(&["run", "models/yin_yang.snn", "--backend", "cuda", "--out", &out_text]);
    assert!(!cuda.status.success() && text(&cuda).contains("not built yet"), "{}", text(&cuda));
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn checkpoints_round_trip_in_both_precisions() {
    let module = common::valid(common::load("yin_yang.snn"));
    let dir = scratch("checkpoint");
    let path = dir.join("c.safetensors");
    let mut params = snnc::exec::state::init_params::<f32>(&module, 7);
    params.weights[0][3] = 0.125;
    snnc::cli::driver::save_checkpoint(&path, &module, &params, "yin_yang").expect("saves");
    let mut loaded = snnc::exec::state::init_params::<f32>(&module, 8);
    assert_ne!(loaded, params);
    snnc::cli::driver::load_checkpoint(&path, &module, &mut loaded).expect("loads");
    assert_eq!(loaded, params, "f32 round trip");
    let wide: snnc::exec::state::Params<f64> = params.convert();
    snnc::cli::driver::save_checkpoint(&path, &module, &wide, "yin_yang").expect("saves");
    let mut back = snnc::exec::state::init_params::<f64>(&module, 8);
    snnc::cli::driver::load_checkpoint(&path, &module, &mut back).expect("loads");
    assert_eq!(back, wide, "f64 round trip");
    // An f64 checkpoint loads into an f32 run, rounded.
    let mut narrow = snnc::exec::state::init_params::<f32>(&module, 8);
    snnc::cli::driver::load_checkpoint(&path, &module, &mut narrow).expect("loads");
    assert_eq!(narrow, params);
    // A checkpoint of another model is refused with its tensor's name.
    let other = common::valid(common::load("lab_lif_mnist.snn"));
    let mut wrong = snnc::exec::state::init_params::<f32>(&other, 1);
    let error = snnc::cli::driver::load_checkpoint(&path, &other, &mut wrong).expect_err("another model");
    assert!(error.contains("proj0"), "{error}");
    std::fs::remove_dir_all(dir).ok();
}

/// Killing a run at any moment (SIGKILL, many times, some of them during a checkpoint write)
/// leaves a complete checkpoint and metrics file, the previous epoch's or the new one: writes go
/// through a temporary file and a rename.
#[test]
fn a_killed_run_leaves_a_complete_checkpoint() {
    let out = scratch("kill");
    let out_text = out.to_string_lossy().into_owned();
    let module = common::valid(common::load("yin_yang.snn"));
    let mut checked = 0;
    for round in 0..16u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_snnc"))
            .args([
                "run",
                "models/yin_yang.snn",
                "--epochs",
                "200",
                "--limit-train",
                "256",
                "--limit-test",
                "64",
                "--threads",
                "1",
                "--out",
                &out_text,
            ])
            .current_dir(common::root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("snnc starts");
        // Epochs take a few milliseconds here: kill at spread-out moments.
        std::thread::sleep(std::time::Duration::from_millis(40 + (snnc::data::splitmix64(round) % 160)));
        child.kill().expect("killed");
        child.wait().expect("reaped");
        let checkpoint = out.join("checkpoint.safetensors");
        if checkpoint.exists() {
            let mut params = snnc::exec::state::init_params::<f32>(&module, 1);
            snnc::cli::driver::load_checkpoint(&checkpoint, &module, &mut params).unwrap_or_else(|e| panic!("round {round}: {e}"));
            // The checkpoint is written before the metrics: a kill between the two leaves the
            // metrics one epoch behind (or not yet written), never torn.
            if let Ok(json) = std::fs::read_to_string(out.join("metrics.json")) {
                serde_json::from_str::<serde_json::Value>(&json).unwrap_or_else(|e| panic!("round {round}: metrics.json: {e}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "a checkpoint existed after {checked} of 16 kills");
    std::fs::remove_dir_all(out).ok();
}

/// `snnc run --resume DIR` continues a run from its checkpoint: two epochs, then two more,
/// end with the weights and the four-epoch metrics of a four-epoch run.
#[test]
fn resume_continues_a_run_from_its_checkpoint() {
    let (whole, parts) = (scratch("whole"), scratch("parts"));
    let (whole_text, parts_text) = (whole.to_string_lossy().into_owned(), parts.to_string_lossy().into_owned());
    let common_args = ["--limit-train", "256", "--limit-test", "64"];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "models/yin_yang.snn"];
        args.extend(common_args);
        args.extend(extra);
        let output = snnc(&args);
        assert!(output.status.success(), "{extra:?}: {}", text(&output));
        output
    };
    run(&["--epochs", "4", "--out", &whole_text]);
    run(&["--epochs", "2", "--out", &parts_text]);
    let resumed = run(&["--epochs", "4", "--resume", &parts_text]);
    assert!(text(&resumed).contains("resuming after epoch 2"), "{}", text(&resumed));
    let module = common::valid(common::load("yin_yang.snn"));
    let load = |dir: &std::path::Path| {
        let mut params = snnc::exec::state::init_params::<f32>(&module, 1);
        snnc::cli::driver::load_checkpoint(&dir.join("checkpoint.safetensors"), &module, &mut params).expect("loads");
        params
    };
    assert_eq!(load(&whole), load(&parts), "resumed weights");
    let epochs = |dir: &std::path::Path| -> usize {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).expect("metrics")).expect("JSON");
        json.as_array().expect("epochs").len()
    };
    assert_eq!(epochs(&parts), 4, "the earlier epochs stay in the metrics");
    assert_eq!(last_test_accuracy(&whole), last_test_accuracy(&parts));
    std::fs::remove_dir_all(whole).ok();
    std::fs::remove_dir_all(parts).ok();
}

/// An `--out` that cannot be written is reported with a code before anything is trained.
#[test]
fn an_unwritable_out_folder_is_reported_before_training() {
    let dir = scratch("unwritable");
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a folder").expect("a file");
    let out = file.join("out");
    let output = snnc(&["run", "models/yin_yang.snn", "--epochs", "1", "--out", &out.to_string_lossy()]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("snn::io::out_not_writable") && shown.contains("help:"), "{shown}");
    assert!(!shown.contains("train acc"), "nothing is trained: {shown}");
    std::fs::remove_dir_all(dir).ok();
}

/// A checkpoint write that fails for lack of space (here a file size limit below the
/// checkpoint's size, which fails the write as a full disk does) stops the run with a coded
/// message, leaves the previous checkpoint byte for byte, keeps the metrics in step with it and
/// leaves no temporary file.
#[test]
fn a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint() {
    let out = scratch("full");
    let out_text = out.to_string_lossy().into_owned();
    let first = snnc(&["run", "models/yin_yang.snn", "--epochs", "1", "--limit-train", "256", "--limit-test", "64", "--out", &out_text]);
    assert!(first.status.success(), "{}", text(&first));
    let checkpoint = out.join("checkpoint.safetensors");
    let before = std::fs::read(&checkpoint).expect("a checkpoint");
    let metrics_before = std::fs::read(out.join("metrics.json")).expect("metrics");
    assert!(before.len() > 4096, "the checkpoint is larger than the limit below");
    // `ulimit -f 4`: files of at most 4 KiB; SIGXFSZ ignored, so a write past it fails (EFBIG).
    let script = format!(
        "ulimit -f 4; trap '' XFSZ; exec '{}' run models/yin_yang.snn --epochs 3 --limit-train 256 --limit-test 64 --resume '{out_text}'",
        env!("CARGO_BIN_EXE_snnc")
    );
    let limited = Command::new("bash").args(["-c", &script]).current_dir(common::root()).output().expect("bash runs");
    let shown = text(&limited);
    assert_eq!(limited.status.code(), Some(1), "{shown}");
    assert!(shown.contains("snn::io::disk_full") && shown.contains("intact"), "{shown}");
    // The run stopped at the first failed write: one epoch trained, not two.
    assert_eq!(shown.matches("spikes per neuron per sample").count(), 1, "{shown}");
    assert_eq!(std::fs::read(&checkpoint).expect("the checkpoint is still there"), before);
    assert_eq!(std::fs::read(out.join("metrics.json")).expect("metrics"), metrics_before);
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .expect("out folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    std::fs::remove_dir_all(out).ok();
}

/// The codes of failed writes: a full disk, a quota and a size limit are `disk_full`; a folder
/// that cannot be written is `out_not_writable`.
#[test]
fn write_failures_are_classified() {
    let path = std::path::Path::new("out/checkpoint.safetensors");
    for (errno, code) in
        [(28, "snn::io::disk_full"), (122, "snn::io::disk_full"), (13, "snn::io::out_not_writable"), (5, "snn::io::write_failed")]
    {
        let message = snnc::cli::driver::write_failure(path, &std::io::Error::from_raw_os_error(errno));
        assert!(message.starts_with(code), "errno {errno}: {message}");
        assert!(message.contains("out/checkpoint.safetensors") && message.contains("help:"), "{message}");
    }
}

/// Diehl & Cook from its file: `snnc run` trains with STDP, labels and tests, writes the
/// receptive fields and the learned thresholds; `snnc eval` from the checkpoint (weights and
/// persistent states) labels and tests again to the same accuracy.
#[test]
fn stdp_runs_labels_and_evaluates_from_the_file() {
    let out = scratch("stdp");
    let out_text = out.to_string_lossy().into_owned();
    let limits = ["--limit-train", "60", "--limit-test", "40"];
    let mut args = vec!["run", "models/diehl_cook_100.snn", "--epochs", "1", "--out", &out_text];
    args.extend(limits);
    let run = snnc(&args);
    assert!(run.status.success(), "{}", text(&run));
    for file in ["checkpoint.safetensors", "receptive_fields_pixels_exc.png", "persistent_states.csv", "diehl_cook_100.csv"] {
        assert!(out.join(file).exists(), "{file} written");
    }
    let thetas = std::fs::read_to_string(out.join("persistent_states.csv")).expect("persistent states");
    assert_eq!(thetas.lines().filter(|l| l.starts_with("exc,theta,")).count(), 100);
    let accuracy = last_test_accuracy(&out);
    let checkpoint = out.join("checkpoint.safetensors").to_string_lossy().into_owned();
    let mut args = vec!["eval", "models/diehl_cook_100.snn", "--checkpoint", &checkpoint];
    args.extend(limits);
    let eval = snnc(&args);
    assert!(eval.status.success(), "{}", text(&eval));
    let expected = format!("test accuracy {:.2}% on 40 samples", 100.0 * accuracy);
    assert!(text(&eval).contains(&expected), "expected `{expected}` in\n{}", text(&eval));
    std::fs::remove_dir_all(out).ok();
}

/// `precision = f64` in the train block makes the run f64; `--precision` overrides it.
#[test]
fn a_train_block_can_ask_for_f64() {
    let dir = scratch("precision");
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let source = std::fs::read_to_string(common::root().join("models/yin_yang.snn")).expect("the quick start");
    let model = dir.join("wide.snn");
    std::fs::write(&model, source.replace("    batch = 32\n", "    batch = 32\n    precision = f64\n")).expect("written");
    let (model_text, out_text) = (model.to_string_lossy().into_owned(), dir.join("out").to_string_lossy().into_owned());
    let args = ["run", &model_text, "--epochs", "1", "--limit-train", "64", "--limit-test", "32", "--out", &out_text];
    let run = snnc(&args);
    assert!(run.status.success() && text(&run).contains("engine in f64"), "{}", text(&run));
    let mut narrow = args.to_vec();
    narrow.extend(["--precision", "f32"]);
    let run = snnc(&narrow);
    assert!(run.status.success() && text(&run).contains("engine in f32"), "{}", text(&run));
    std::fs::remove_dir_all(dir).ok();
}

/// An EventProp model trains from its file (exact spike times, derived gradients) and `snnc
/// eval` scores its checkpoint as the run's test pass did.
#[test]
fn eventprop_runs_and_evaluates_from_the_file() {
    let out = scratch("eventprop");
    let out_text = out.to_string_lossy().into_owned();
    let limits = ["--limit-train", "256", "--limit-test", "100"];
    let mut args = vec!["run", "models/eventprop_yin_yang_l.snn", "--epochs", "1", "--out", &out_text];
    args.extend(limits);
    let run = snnc(&args);
    assert!(run.status.success(), "{}", text(&run));
    let accuracy = last_test_accuracy(&out);
    let checkpoint = out.join("checkpoint.safetensors").to_string_lossy().into_owned();
    let mut args = vec!["eval", "models/eventprop_yin_yang_l.snn", "--checkpoint", &checkpoint];
    args.extend(limits);
    let eval = snnc(&args);
    assert!(eval.status.success(), "{}", text(&eval));
    let expected = format!("test accuracy {:.2}% on 100 samples", 100.0 * accuracy);
    assert!(text(&eval).contains(&expected), "expected `{expected}` in\n{}", text(&eval));
    std::fs::remove_dir_all(out).ok();
}

/// With stderr not a terminal (a file, a pipe, `nohup`), progress comes as plain lines with
/// the rate, every `SNNC_PROGRESS_EVERY` seconds.
#[test]
fn progress_is_written_as_lines_when_stderr_is_not_a_terminal() {
    let out = scratch("progress");
    let out_text = out.to_string_lossy().into_owned();
    let run = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["run", "models/yin_yang.snn", "--epochs", "2", "--limit-train", "2000", "--limit-test", "50", "--out", &out_text])
        .env("SNNC_PROGRESS_EVERY", "0")
        .current_dir(common::root())
        .output()
        .expect("snnc runs");
    assert!(run.status.success(), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let line = stderr.lines().find(|l| l.starts_with("epoch 1: ")).unwrap_or_else(|| panic!("a progress line in\n{stderr}"));
    assert!(line.contains("/2000 training samples") && line.contains("samples/s") && line.contains("running loss"), "{line}");
    // The rate counts from the epoch's first batch on, whose own time the progress does not
    // see: no line for that batch alone (it gave millions of samples per second), in the
    // second epoch either.
    let batch = 32;
    for epoch in [1, 2] {
        let first = format!("epoch {epoch}: {batch}/2000 ");
        assert!(!stderr.lines().any(|l| l.starts_with(&first)), "{stderr}");
        assert!(stderr.lines().any(|l| l.starts_with(&format!("epoch {epoch}: "))), "{stderr}");
    }
    std::fs::remove_dir_all(out).ok();
}
