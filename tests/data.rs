//! The MNIST reader on small generated IDX files (gz and raw), its diagnostics for missing and
//! corrupt files, and the real files when SNNC_MNIST_DIR is set (CI sets it).

use std::io::Write;
use std::path::{Path, PathBuf};

use snnc::data::{DataError, load_mnist, resolve_dir, write_idx};

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
