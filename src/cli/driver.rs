//! The driver: reads files, runs the front end, renders diagnostics. Only this module and
//! `main.rs` touch the file system for the front end.

use std::path::Path;

use crate::exec::real::Real;
use crate::exec::state::Params;
use crate::front::diag::Diagnostic;
use crate::lower::{Outcome, compile};
use crate::train::Snapshot;

/// The result of checking one file on disk.
pub struct Checked {
    pub outcome: Outcome,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

pub fn check_path(path: &Path) -> Result<Checked, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Ok(check_bytes(&path.display().to_string(), &bytes, path.parent()))
}

/// Checks a file's bytes: UTF-8 text, with a byte-order mark skipped (editors on Windows write
/// one); anything else is reported with a code and the offset of the first bad byte.
pub fn check_bytes(name: &str, bytes: &[u8], base_dir: Option<&Path>) -> Checked {
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    // UTF-16 without a byte-order mark is valid UTF-8 when it is ASCII text: every other byte
    // is a NUL. It is reported as UTF-16, not as a NUL in the text.
    if let Some(little_endian) = utf16_without_bom(bytes) {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| if little_endian { u16::from_le_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], c[1]]) })
            .collect();
        let shown = String::from_utf16_lossy(&units);
        let end = shown.chars().next().map_or(0, char::len_utf8);
        let offset = usize::from(little_endian);
        let mut checked = check_text(name, "", base_dir);
        let mut diagnostics = crate::front::diag::Diagnostics::default();
        diagnostics.push(
            Diagnostic::error(
                "snn::input::not_utf8",
                format!(
                    "{name} is not UTF-8 text: it looks like UTF-16 ({}, no byte-order mark): byte {offset} is 0x00",
                    if little_endian { "little-endian" } else { "big-endian" }
                ),
                crate::front::ast::Span::new(0, end),
                "UTF-16 text",
            )
            .with_help("save it as UTF-8 (most editors offer the encoding under \"Save as\")"),
        );
        let source = std::sync::Arc::new(crate::front::diag::SourceFile { name: name.to_string(), text: shown });
        diagnostics.attach(&source);
        checked.diagnostics = diagnostics.sorted();
        return checked;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => check_text(name, text, base_dir),
        Err(error) => {
            let offset = error.valid_up_to();
            // Show the file as far as it decodes, the bad bytes replaced, the label at the first.
            let shown = String::from_utf8_lossy(bytes).into_owned();
            let start = String::from_utf8_lossy(&bytes[..offset]).len();
            let end = (start + '\u{FFFD}'.len_utf8()).min(shown.len());
            let utf16 = bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) || {
                let head = &bytes[..bytes.len().min(64)];
                head.len() >= 4 && head.iter().filter(|b| **b == 0).count() * 3 >= head.len()
            };
            let help = if utf16 {
                "it looks like UTF-16: save it as UTF-8 (most editors offer the encoding under \"Save as\")"
            } else {
                "save the file as UTF-8; if it is Latin-1 or another 8-bit encoding, convert it, e.g. `iconv -f latin1 -t utf-8`"
            };
            // UTF-16 with a byte-order mark is shown decoded, the label on its first character.
            let (shown, start, end) = match (bytes.strip_prefix(&[0xFF, 0xFE]), utf16) {
                (Some(wide), true) => {
                    let units: Vec<u16> = wide.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                    let text = String::from_utf16_lossy(&units);
                    let end = text.chars().next().map_or(0, char::len_utf8);
                    (text, 0, end)
                }
                _ => (shown, start, end),
            };
            let mut checked = check_text(name, "", base_dir);
            let mut diagnostics = crate::front::diag::Diagnostics::default();
            diagnostics.push(
                Diagnostic::error(
                    "snn::input::not_utf8",
                    format!("{name} is not UTF-8 text: byte {offset} (0x{:02X}) does not decode", bytes[offset]),
                    crate::front::ast::Span::new(start, end),
                    "first byte that is not UTF-8",
                )
                .with_help(help),
            );
            let source = std::sync::Arc::new(crate::front::diag::SourceFile { name: name.to_string(), text: shown });
            diagnostics.attach(&source);
            checked.diagnostics = diagnostics.sorted();
            checked
        }
    }
}

/// Whether the bytes look like UTF-16 text without a byte-order mark: in the first 64 bytes,
/// every byte at odd offsets is 0 and none at even ones (little-endian: `Some(true)`), or the
/// other way round (big-endian: `Some(false)`).
fn utf16_without_bom(bytes: &[u8]) -> Option<bool> {
    let head = &bytes[..bytes.len().min(64) & !1];
    if head.len() < 4 || bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return None;
    }
    let zero_at = |parity: usize| head.iter().skip(parity).step_by(2).filter(|b| **b == 0).count();
    let half = head.len() / 2;
    match (zero_at(0), zero_at(1)) {
        (0, odd) if odd == half => Some(true),
        (even, 0) if even == half => Some(false),
        _ => None,
    }
}

pub fn check_text(name: &str, text: &str, base_dir: Option<&Path>) -> Checked {
    let mut outcome = compile(name, text, base_dir);
    let diagnostics = without_follow_ons(std::mem::take(&mut outcome.diagnostics).sorted());
    Checked { outcome, diagnostics }
}

/// A number literal outside the range of f64 (`1e999`, `1e-999`) is reported once: the value
/// it was read as (infinity, zero) is no value the user wrote, so a later check that reports
/// on a span holding that literal (`lr` must be positive, `batch` too large) is dropped.
fn without_follow_ons(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let file = |d: &Diagnostic| d.source.as_ref().map(|s| s.name.clone());
    let poisoned: Vec<(Option<String>, crate::front::ast::Span)> =
        diagnostics.iter().filter(|d| d.code == "snn::syntax::number_out_of_range").map(|d| (file(d), d.primary.span)).collect();
    if poisoned.is_empty() {
        return diagnostics;
    }
    diagnostics
        .into_iter()
        .filter(|d| {
            d.code.split("::").nth(1) == Some("syntax")
                || !poisoned
                    .iter()
                    .any(|(name, span)| *name == file(d) && d.primary.span.start <= span.start && span.end <= d.primary.span.end)
        })
        .collect()
}

/// Renders diagnostics for a terminal (or a snapshot: no colour, fixed width).
pub fn render_all(diagnostics: &[Diagnostic], width: usize) -> String {
    diagnostics.iter().map(|d| d.render(width)).collect::<Vec<_>>().join("\n")
}

/// Options of `snnc run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub engine: crate::exec::engine::EngineKind,
    pub precision: crate::exec::real::Precision,
    pub epochs: Option<usize>,
    pub sets: Vec<(String, String)>,
    pub out: Option<std::path::PathBuf>,
    pub data_dir: Option<std::path::PathBuf>,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub seed: u64,
    pub progress: bool,
    /// The folder of a run to continue.
    pub resume: Option<std::path::PathBuf>,
    /// Draw the run's figures into `<out>/plots/` after every epoch (`snnc run --plot`).
    pub plot: bool,
}

/// Applies `--set` overrides to a checked module and validates the result: engines take only
/// a validated module.
pub fn prepare(mut module: crate::ir::Module, sets: &[(String, String)]) -> Result<crate::ir::validate::Valid, String> {
    apply_sets(&mut module, sets)?;
    crate::ir::validate::validate(module).map_err(|e| format!("the model is not valid after lowering: {e}"))
}

/// Applies `--set name=value` overrides: `steps`, `batch`, `epochs`, `lr`, `seed` or a network
/// parameter.
pub fn apply_sets(module: &mut crate::ir::Module, sets: &[(String, String)]) -> Result<(), String> {
    for (key, value) in sets {
        let number: f64 = value.parse().map_err(|_| format!("--set {key}={value}: `{value}` is not a number"))?;
        let whole = || {
            if number >= 1.0 && number == number.trunc() {
                Ok(number as usize)
            } else {
                Err(format!("--set {key}: needs a positive whole number"))
            }
        };
        match key.as_str() {
            "steps" => module.steps = whole()?,
            "batch" => module.train.as_mut().ok_or("the model has no train block")?.batch = whole()?,
            "epochs" => {
                module.train.as_mut().ok_or("the model has no train block")?.phases.iter_mut().for_each(|p| p.epochs = number as usize)
            }
            "lr" => module.train.as_mut().ok_or("the model has no train block")?.phases.iter_mut().for_each(|p| p.optimizer.lr = number),
            "seed" => module.train.as_mut().ok_or("the model has no train block")?.seed = number as u64,
            name => match module.params.iter_mut().find(|(n, _)| n == name) {
                Some((_, slot)) => *slot = number,
                None => {
                    let mut keys = vec!["steps", "batch", "epochs", "lr", "seed"];
                    keys.extend(module.params.iter().map(|(n, _)| n.as_str()));
                    let help = crate::front::diag::did_you_mean(name, keys.iter().copied())
                        .map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
                    return Err(format!("--set {name}: not a setting of this model{help}; settings: {}", keys.join(", ")));
                }
            },
        }
    }
    Ok(())
}

/// Loads the data set a train block names. N-MNIST's samples are binned through their last
/// event (the engines read the bins of the steps they run).
pub fn load_data(train: &crate::ir::train::Train, data_dir: Option<&Path>) -> Result<crate::data::Dataset, String> {
    load_data_steps(train, data_dir, None)
}

/// The data set of `module`'s train block, for a run of the module's steps: event data is
/// binned into at most that many steps, so that a sample's size does not depend on its last
/// event (a bin far smaller than the model's `dt` cannot blow up memory).
pub fn load_data_for(module: &crate::ir::Module, data_dir: Option<&Path>) -> Result<crate::data::Dataset, String> {
    let train = module.train.as_ref().ok_or("the model has no train block")?;
    load_data_steps(train, data_dir, Some(module.steps + module.rest_steps))
}

fn load_data_steps(train: &crate::ir::train::Train, data_dir: Option<&Path>, steps: Option<usize>) -> Result<crate::data::Dataset, String> {
    use crate::ir::train::Data;
    let resolve = |dir: &str| crate::data::resolve_dir(dir, data_dir, |var| std::env::var(var).ok());
    match &train.data {
        Data::YinYang { train, test, seed } => Ok(crate::data::yin_yang(*train, *test, *seed)),
        Data::Mnist { dir, .. } => crate::data::load_mnist(&resolve(dir)).map_err(|e| e.to_string()),
        Data::FashionMnist { dir, .. } => crate::data::load_fashion_mnist(&resolve(dir)).map_err(|e| e.to_string()),
        Data::Nmnist { dir, bin } => crate::data::load_nmnist(&resolve(dir), bin * 1e6, steps).map_err(|e| e.to_string()),
    }
}

/// Writes `bytes` through a temporary file, flushed to disk, and a rename: a reader never sees
/// half a file, and a failed write (a full disk, a kill) leaves the previous file intact and no
/// temporary file behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(error) => {
            std::fs::remove_file(&temp).ok();
            Err(error)
        }
    }
}

/// A failed write of a run's output as a coded message: `snn::io::disk_full` when the disk (or
/// a quota, or a file size limit) is full, `snn::io::out_not_writable` when the folder cannot
/// be written, `snn::io::write_failed` otherwise. Says that what was written before is intact.
pub fn write_failure(path: &Path, error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    // ENOSPC 28, EFBIG 27, EDQUOT 122 (Linux numbers; the kinds cover the other systems).
    let full = matches!(error.kind(), ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded)
        || matches!(error.raw_os_error(), Some(27 | 28 | 122));
    let not_writable = matches!(
        error.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem | ErrorKind::NotADirectory | ErrorKind::NotFound
    );
    let (code, what, help) = if full {
        ("snn::io::disk_full", "no space left", "free space on the disk, or give a folder on another disk with --out")
    } else if not_writable {
        ("snn::io::out_not_writable", "the folder cannot be written", "give a folder you can write with --out")
    } else {
        ("snn::io::write_failed", "the write failed", "check the disk, or give another folder with --out")
    };
    format!(
        "{code}: cannot write {} ({what}: {error}); files written before are intact\n  help: {help}; `snnc run --resume DIR` continues from the last checkpoint",
        path.display()
    )
}

/// Checks before a run starts that its output folder can be created and written (a file is
/// written and removed there), so that a run does not train for hours and then fail to save.
pub fn check_out_dir(out: &Path) -> Result<(), String> {
    let probe = out.join(".snnc-write-test");
    write_atomically(&probe, b"snnc").map_err(|error| write_failure(out, &error))?;
    std::fs::remove_file(&probe).map_err(|error| write_failure(out, &error))
}

/// One tensor of a checkpoint: its name, shape and little-endian bytes.
type Tensor = (String, Vec<usize>, Vec<u8>);

/// The tensors of a [`Params`] (weights per projection, learnable neuron parameters), each
/// name prefixed with `prefix`, in the precision of `F`.
fn param_tensors<F: Real>(module: &crate::ir::Module, params: &Params<F>, prefix: &str) -> Vec<Tensor> {
    let bytes_of = |values: &[F]| -> Vec<u8> {
        values
            .iter()
            .flat_map(|w| if F::BYTES == 4 { (w.into_f64() as f32).to_le_bytes().to_vec() } else { w.into_f64().to_le_bytes().to_vec() })
            .collect()
    };
    let mut tensors = Vec::new();
    for (index, proj) in module.projections.iter().enumerate() {
        let name = format!("{prefix}proj{index}.{}->{}", module.source_name(&proj.source), module.population(proj.target).name);
        tensors.push((name, proj.weight_shape.clone(), bytes_of(&params.weights[index])));
    }
    for (p, pop) in module.populations.iter().enumerate() {
        for (v, var) in pop.vars.iter().enumerate() {
            let values = &params.neuron_params[p][v];
            if !values.is_empty() {
                tensors.push((format!("{prefix}{}.{}", pop.name, var.name), vec![values.len()], bytes_of(values)));
            }
        }
    }
    tensors
}

/// Serialises tensors with metadata and writes them atomically.
fn write_tensors<F: Real>(path: &Path, tensors: &[Tensor], metadata: std::collections::HashMap<String, String>) -> Result<(), String> {
    let dtype = if F::BYTES == 4 { safetensors::Dtype::F32 } else { safetensors::Dtype::F64 };
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).map_err(|e| e.to_string())?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_, String>>()?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())?;
    write_atomically(path, &bytes).map_err(|error| write_failure(path, &error))
}

/// Saves weights and learnable neuron parameters as safetensors in the run's precision, with
/// the model's name and network in the metadata.
pub fn save_checkpoint<F: Real>(path: &Path, module: &crate::ir::Module, params: &Params<F>, model: &str) -> Result<(), String> {
    let metadata =
        std::collections::HashMap::from([("model".to_string(), model.to_string()), ("network".to_string(), module.network.clone())]);
    write_tensors::<F>(path, &param_tensors(module, params, ""), metadata)
}

/// Saves what a run needs to continue ([`Snapshot`]): the parameters as [`save_checkpoint`]
/// does (so `snnc eval` reads it too), the method's tensors under `method.<name>.`, and the
/// epochs done, the method's counter and the network parameters' values in the metadata.
pub fn save_snapshot<F: Real>(path: &Path, module: &crate::ir::Module, snapshot: &Snapshot<F>, model: &str) -> Result<(), String> {
    let mut tensors = param_tensors(module, &snapshot.params, "");
    for (name, values) in &snapshot.method.tensors {
        tensors.extend(param_tensors(module, values, &format!("method.{name}.")));
    }
    let names: Vec<&str> = snapshot.method.tensors.iter().map(|(name, _)| name.as_str()).collect();
    let metadata = std::collections::HashMap::from([
        ("model".to_string(), model.to_string()),
        ("network".to_string(), module.network.clone()),
        ("epochs_done".to_string(), snapshot.epochs_done.to_string()),
        ("method_counter".to_string(), snapshot.method.counter.to_string()),
        ("method_tensors".to_string(), names.join(",")),
        ("net".to_string(), serde_json::to_string(&snapshot.net).map_err(|e| e.to_string())?),
    ]);
    write_tensors::<F>(path, &tensors, metadata)
}

/// Reads a [`Params`] of the module's layout whose tensor names carry `prefix`.
fn read_params<F: Real>(
    path: &Path,
    tensors: &safetensors::SafeTensors,
    module: &crate::ir::Module,
    params: &mut Params<F>,
    prefix: &str,
) -> Result<(), String> {
    let read = |name: &str, len: usize| -> Result<Vec<F>, String> {
        let view =
            tensors.tensor(name).map_err(|_| format!("{} has no tensor `{name}`; was it written for this model?", path.display()))?;
        let data = view.data();
        let width = match view.dtype() {
            safetensors::Dtype::F32 => 4,
            safetensors::Dtype::F64 => 8,
            other => return Err(format!("tensor `{name}` in {} is {other:?}; checkpoints hold F32 or F64", path.display())),
        };
        if data.len() != len * width {
            return Err(format!("tensor `{name}` in {} has {} values, the model needs {len}", path.display(), data.len() / width));
        }
        Ok(data
            .chunks_exact(width)
            .map(|c| match c {
                [a, b, c, d] => F::of(f64::from(f32::from_le_bytes([*a, *b, *c, *d]))),
                _ => F::of(f64::from_le_bytes(c.try_into().expect("eight bytes"))),
            })
            .collect())
    };
    for (index, proj) in module.projections.iter().enumerate() {
        let name = format!("{prefix}proj{index}.{}->{}", module.source_name(&proj.source), module.population(proj.target).name);
        params.weights[index] = read(&name, params.weights[index].len())?;
    }
    for (p, pop) in module.populations.iter().enumerate() {
        for (v, var) in pop.vars.iter().enumerate() {
            let len = params.neuron_params[p][v].len();
            if len > 0 {
                params.neuron_params[p][v] = read(&format!("{prefix}{}.{}", pop.name, var.name), len)?;
            }
        }
    }
    Ok(())
}

/// Loads a checkpoint written by [`save_checkpoint`] or [`save_snapshot`] (in either
/// precision) into `params`; every tensor must match.
pub fn load_checkpoint<F: Real>(path: &Path, module: &crate::ir::Module, params: &mut Params<F>) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let tensors =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("{} is not a safetensors file: {e}", path.display()))?;
    read_params(path, &tensors, module, params, "")
}

/// Loads a snapshot written by [`save_snapshot`] to resume a run from.
pub fn load_snapshot<F: Real>(path: &Path, module: &crate::ir::Module) -> Result<Snapshot<F>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format!("{} is not a safetensors file: {e}", path.display()))?;
    let tensors =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("{} is not a safetensors file: {e}", path.display()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let field =
        |key: &str| metadata.get(key).ok_or_else(|| format!("{} holds weights only, not a run to resume (no `{key}`)", path.display()));
    let mut params = crate::exec::state::init_params::<F>(module, 0);
    read_params(path, &tensors, module, &mut params, "")?;
    let mut method = crate::train::method::MethodState {
        tensors: Vec::new(),
        counter: field("method_counter")?.parse().map_err(|e| format!("{}: {e}", path.display()))?,
    };
    for name in field("method_tensors")?.split(',').filter(|n| !n.is_empty()) {
        let mut values = params.zeros_like();
        read_params(path, &tensors, module, &mut values, &format!("method.{name}."))?;
        method.tensors.push((name.to_string(), values));
    }
    Ok(Snapshot {
        params,
        method,
        epochs_done: field("epochs_done")?.parse().map_err(|e| format!("{}: {e}", path.display()))?,
        net: serde_json::from_str(field("net")?).map_err(|e| format!("{}: {e}", path.display()))?,
    })
}
