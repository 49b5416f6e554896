//! Data sets: MNIST and Fashion-MNIST from IDX files (gz or raw), N-MNIST's event recordings
//! from one binary file per sample, and the Yin-Yang set generated in-process, plus the
//! counter-based random numbers every encoder and generator uses.
//!
//! A data set is a list of samples, each a feature vector and a class label; an event sample's
//! features are its events binned into steps (one block of features per step). Errors are coded
//! (`snn::data::missing`, `snn::data::corrupt`, `snn::data::unreadable`) and name the files that
//! were expected and where they were looked for.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Samples of one split, stored row-major: sample `i` is elements
/// `[i * n_features, (i + 1) * n_features)` of `features`.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub n_features: usize,
    pub features: Features,
    pub labels: Vec<u8>,
}

/// The feature values of a split: floats, or bytes that stand for `byte / 255` (MNIST's
/// pixels, kept at a quarter of the memory: 47 MB instead of 188 MB for the training set), or
/// event recordings.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    Floats(Vec<f32>),
    Bytes(Vec<u8>),
    Events(Events),
}

/// Event recordings, kept as events (six bytes each), never as a dense tensor: sample `i`'s
/// events are `[offsets[i], offsets[i + 1])` of `times_us` and `neurons`, in file order. A
/// sample's features ([`Split::sample`]) are its events binned into blocks of `n_features`
/// values, one per step: block `t` counts each element's events with a time in
/// `[t * bin_us, (t + 1) * bin_us)`. There are `steps` blocks (later events dropped), or with
/// `steps` None as many as reach the sample's last event.
#[derive(Clone, Debug, PartialEq)]
pub struct Events {
    pub offsets: Vec<usize>,
    pub times_us: Vec<u32>,
    /// The input element of each event: `polarity * 34 * 34 + y * 34 + x` for N-MNIST.
    pub neurons: Vec<u16>,
    pub bin_us: f64,
    pub steps: Option<usize>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A split of float features.
    pub fn floats(n_features: usize, features: Vec<f32>, labels: Vec<u8>) -> Split {
        Split { n_features, features: Features::Floats(features), labels }
    }

    /// Sample `index`'s features: borrowed when stored as floats, converted from bytes, binned
    /// from events (`steps * n_features` values, see [`Events`]).
    pub fn sample(&self, index: usize) -> std::borrow::Cow<'_, [f32]> {
        let range = index * self.n_features..(index + 1) * self.n_features;
        match &self.features {
            Features::Floats(values) => std::borrow::Cow::Borrowed(&values[range]),
            Features::Bytes(bytes) => std::borrow::Cow::Owned(bytes[range].iter().map(|b| f32::from(*b) / 255.0).collect()),
            Features::Events(events) => {
                let span = events.offsets[index]..events.offsets[index + 1];
                let bin_of = |time: u32| (f64::from(time) / events.bin_us).floor();
                let last = events.times_us[span.clone()].iter().map(|t| (bin_of(*t) as usize).saturating_add(1)).max().unwrap_or(0);
                let steps = events.steps.map_or(last, |steps| steps.min(last));
                let mut out = vec![0.0f32; steps * self.n_features];
                for (time, neuron) in events.times_us[span.clone()].iter().zip(&events.neurons[span]) {
                    let bin = bin_of(*time);
                    if bin < steps as f64 && usize::from(*neuron) < self.n_features {
                        out[bin as usize * self.n_features + usize::from(*neuron)] += 1.0;
                    }
                }
                std::borrow::Cow::Owned(out)
            }
        }
    }

    /// Sample `index`'s events as `(time in µs, element)`, in file order; empty for a split
    /// that is not made of events.
    pub fn events(&self, index: usize) -> Vec<(u32, u16)> {
        match &self.features {
            Features::Events(events) => {
                let span = events.offsets[index]..events.offsets[index + 1];
                events.times_us[span.clone()].iter().copied().zip(events.neurons[span].iter().copied()).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    pub classes: usize,
}

#[derive(Debug)]
pub enum DataError {
    /// None of the candidate files or folders for one part of the set exists: `what` names
    /// the part, `help` the folder layout the set needs and how to point snnc at it.
    Missing {
        what: String,
        looked_for: Vec<PathBuf>,
        help: String,
    },
    /// A file exists but is not a valid file of the expected `kind`.
    Corrupt {
        path: PathBuf,
        kind: &'static str,
        reason: String,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl DataError {
    /// The diagnostic code: `snn::data::missing`, `snn::data::corrupt` or `snn::data::unreadable`.
    pub fn code(&self) -> &'static str {
        match self {
            DataError::Missing { .. } => "snn::data::missing",
            DataError::Corrupt { .. } => "snn::data::corrupt",
            DataError::Io { .. } => "snn::data::unreadable",
        }
    }
}

impl fmt::Display for DataError {
    /// `CODE: message` and an indented `help:` line, as the driver's other run-time errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code();
        match self {
            DataError::Missing { what, looked_for, help } => {
                let list: Vec<String> = looked_for.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{code}: {what} not found; looked for {}\n  help: {help}", list.join(", "))
            }
            DataError::Corrupt { path, kind, reason } => write!(
                f,
                "{code}: {} is not a valid {kind}: {reason}\n  help: the file is damaged or of another kind; download or unpack it again",
                path.display()
            ),
            DataError::Io { path, error } => {
                write!(
                    f,
                    "{code}: cannot read {}: {error}\n  help: check that the file is readable (permissions, the disk)",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for DataError {}

/// One of the image sets stored as MNIST's four IDX files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSet {
    Mnist,
    FashionMnist,
}

impl ImageSet {
    pub fn name(self) -> &'static str {
        match self {
            ImageSet::Mnist => "MNIST",
            ImageSet::FashionMnist => "Fashion-MNIST",
        }
    }

    /// The variable that names its folder in the shipped models.
    pub fn variable(self) -> &'static str {
        match self {
            ImageSet::Mnist => "SNNC_MNIST_DIR",
            ImageSet::FashionMnist => "SNNC_FASHION_MNIST_DIR",
        }
    }

    fn help(self) -> String {
        let source = match self {
            ImageSet::Mnist => "any MNIST mirror has them",
            ImageSet::FashionMnist => "Zalando's Fashion-MNIST release ships them under these names",
        };
        format!(
            "set {} or pass --data DIR to the folder holding {}, {}, {} and {} (gz or raw; {source})",
            self.variable(),
            IDX_FILES[0],
            IDX_FILES[1],
            IDX_FILES[2],
            IDX_FILES[3]
        )
    }
}

/// The four files of an IDX image set, gzipped (the raw files drop `.gz`).
pub const IDX_FILES: [&str; 4] =
    ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];

/// Resolves a data folder written as `$VAR|default` (the model's `env("VAR", "default")`):
/// an explicit override first, then the variable, then the default.
pub fn resolve_dir(spec: &str, override_dir: Option<&Path>, lookup: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = override_dir {
        return dir.to_path_buf();
    }
    match spec.strip_prefix('$').and_then(|rest| rest.split_once('|')) {
        Some((var, default)) => lookup(var).filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from(default), PathBuf::from),
        None => PathBuf::from(spec),
    }
}

/// Reads MNIST from `dir`: pixel values scaled to [0, 1].
pub fn load_mnist(dir: &Path) -> Result<Dataset, DataError> {
    load_images(dir, ImageSet::Mnist)
}

/// Reads Fashion-MNIST from `dir` (the same four IDX files as MNIST, ten classes of clothing).
pub fn load_fashion_mnist(dir: &Path) -> Result<Dataset, DataError> {
    load_images(dir, ImageSet::FashionMnist)
}

/// Reads an IDX image set from `dir`: pixel values scaled to [0, 1], ten classes.
pub fn load_images(dir: &Path, set: ImageSet) -> Result<Dataset, DataError> {
    let train = read_split(dir, "train", set)?;
    let test = read_split(dir, "t10k", set)?;
    Ok(Dataset { train, test, classes: 10 })
}

fn read_split(dir: &Path, prefix: &str, set: ImageSet) -> Result<Split, DataError> {
    let part = if prefix == "train" { "training" } else { "test" };
    let (images_path, images) = read_first(dir, &format!("{prefix}-images-idx3-ubyte"), &format!("{} {part} images", set.name()), set)?;
    let (labels_path, labels) = read_first(dir, &format!("{prefix}-labels-idx1-ubyte"), &format!("{} {part} labels", set.name()), set)?;
    let kind = "IDX file";
    let (dims, pixels) = parse_idx(&images, 3).map_err(|reason| DataError::Corrupt { path: images_path.clone(), kind, reason })?;
    let (label_dims, labels) = parse_idx(&labels, 1).map_err(|reason| DataError::Corrupt { path: labels_path.clone(), kind, reason })?;
    if dims[0] != label_dims[0] {
        return Err(DataError::Corrupt {
            path: labels_path,
            kind,
            reason: format!("{} labels for {} images in {}", label_dims[0], dims[0], images_path.display()),
        });
    }
    if let Some(bad) = labels.iter().find(|l| **l > 9) {
        return Err(DataError::Corrupt { path: labels_path, kind, reason: format!("label {bad} is not one of the ten classes 0..9") });
    }
    // The pixels stay bytes, in the buffer they were read into (its header dropped).
    let (header, n_features, labels) = (images.len() - pixels.len(), dims[1] * dims[2], labels.to_vec());
    let mut images = images;
    images.drain(..header);
    images.shrink_to_fit();
    Ok(Split { n_features, features: Features::Bytes(images), labels })
}

/// Reads `name.gz` or `name`, whichever exists first.
fn read_first(dir: &Path, name: &str, what: &str, set: ImageSet) -> Result<(PathBuf, Vec<u8>), DataError> {
    let candidates = [dir.join(format!("{name}.gz")), dir.join(name)];
    for path in &candidates {
        if !path.exists() {
            continue;
        }
        let raw = std::fs::read(path).map_err(|error| DataError::Io { path: path.clone(), error })?;
        if path.extension().is_some_and(|e| e == "gz") {
            let mut bytes = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut bytes).map_err(|error| DataError::Corrupt {
                path: path.clone(),
                kind: "gzip file",
                reason: error.to_string(),
            })?;
            return Ok((path.clone(), bytes));
        }
        return Ok((path.clone(), raw));
    }
    Err(DataError::Missing { what: what.to_string(), looked_for: candidates.to_vec(), help: set.help() })
}

/// Parses an IDX file of unsigned bytes with `rank` dimensions.
pub fn parse_idx(bytes: &[u8], rank: usize) -> Result<(Vec<usize>, &[u8]), String> {
    if bytes.len() < 4 {
        return Err("shorter than its header".to_string());
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err("bad magic number".to_string());
    }
    if bytes[2] != 0x08 {
        return Err(format!("element type 0x{:02x}, expected unsigned bytes (0x08)", bytes[2]));
    }
    if usize::from(bytes[3]) != rank {
        return Err(format!("{} dimensions, expected {rank}", bytes[3]));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err("shorter than its header".to_string());
    }
    let dims: Vec<usize> =
        (0..rank).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("four bytes")) as usize).collect();
    let count = dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).ok_or("dimensions overflow")?;
    let data = &bytes[header..];
    if data.len() != count {
        return Err(format!("{} data bytes, the header says {count}", data.len()));
    }
    Ok((dims, data))
}

/// Writes an IDX file of unsigned bytes; used by tests and `snnc data`.
pub fn write_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for dim in dims {
        out.extend_from_slice(&(*dim as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

// ---------------------------------------------------------------- N-MNIST

/// N-MNIST's sensor is 34 x 34 pixels with two polarities: an input of `[2, 34, 34]` elements.
pub const NMNIST_SIDE: usize = 34;
pub const NMNIST_ELEMENTS: usize = 2 * NMNIST_SIDE * NMNIST_SIDE;

/// One event of an N-MNIST recording: a pixel, its polarity (on: brighter) and its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub x: u8,
    pub y: u8,
    pub on: bool,
    pub t_us: u32,
}

impl Event {
    /// The input element it drives: polarity-major `[2, 34, 34]` (off first, then on; rows
    /// `y`, columns `x`), the layout of Tonic's frames.
    pub fn element(self) -> u16 {
        let side = NMNIST_SIDE as u16;
        u16::from(self.on) * side * side + u16::from(self.y) * side + u16::from(self.x)
    }
}

/// A `y` of 240 marks a timestamp overflow, not an event: the events after it are 2^13 µs
/// later than their stored time (the data set's own reader, gorchard/event-Python, and Tonic
/// read it so).
const OVERFLOW_Y: u8 = 240;
const OVERFLOW_US: u32 = 1 << 13;

/// Parses one N-MNIST `.bin` file: 40-bit events, byte 0 `x`, byte 1 `y`, bit 7 of byte 2 the
/// polarity, bits 6..0 of byte 2 and bytes 3 and 4 the time in microseconds (23 bits, most
/// significant first).
pub fn parse_nmnist_events(bytes: &[u8]) -> Result<Vec<Event>, String> {
    if !bytes.len().is_multiple_of(5) {
        return Err(format!(
            "{} bytes is not a whole number of 5-byte events (cut off after {} whole events)",
            bytes.len(),
            bytes.len() / 5
        ));
    }
    let mut overflow = 0u32;
    let mut events = Vec::with_capacity(bytes.len() / 5);
    for (k, e) in bytes.chunks_exact(5).enumerate() {
        let (x, y) = (e[0], e[1]);
        if y == OVERFLOW_Y {
            overflow = overflow.saturating_add(OVERFLOW_US);
            continue;
        }
        if usize::from(x) >= NMNIST_SIDE || usize::from(y) >= NMNIST_SIDE {
            return Err(format!("event {k} (byte {}) is at pixel ({x}, {y}), outside the 34 x 34 sensor", 5 * k));
        }
        let time = (u32::from(e[2] & 0x7f) << 16) | (u32::from(e[3]) << 8) | u32::from(e[4]);
        events.push(Event { x, y, on: e[2] & 0x80 != 0, t_us: time.saturating_add(overflow) });
    }
    Ok(events)
}

/// Writes events in N-MNIST's `.bin` format (times below 2^23 µs); used by tests.
pub fn write_nmnist_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 5);
    for e in events {
        let t = e.t_us & 0x7f_ffff;
        out.extend_from_slice(&[e.x, e.y, (u8::from(e.on) << 7) | (t >> 16) as u8, (t >> 8) as u8, t as u8]);
    }
    out
}

fn nmnist_help() -> String {
    "set SNNC_NMNIST_DIR or pass --data DIR to the folder holding Train/<digit>/<id>.bin and \
     Test/<digit>/<id>.bin (N-MNIST, Orchard et al. 2015: Train.zip and Test.zip unpacked side by side)"
        .to_string()
}

/// Reads N-MNIST from `dir` (`Train/<digit>/<id>.bin`, `Test/<digit>/<id>.bin`; samples in
/// order of digit, then file name). A sample's features are its events binned into bins of
/// `bin_us` microseconds, `steps` of them or through its last event (see [`Events`]).
pub fn load_nmnist(dir: &Path, bin_us: f64, steps: Option<usize>) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            what: "the N-MNIST folder".to_string(),
            looked_for: vec![dir.to_path_buf()],
            help: nmnist_help(),
        });
    }
    let train = read_event_split(dir, "Train", "training", bin_us, steps)?;
    let test = read_event_split(dir, "Test", "test", bin_us, steps)?;
    Ok(Dataset { train, test, classes: 10 })
}

fn read_event_split(dir: &Path, folder: &str, part: &str, bin_us: f64, steps: Option<usize>) -> Result<Split, DataError> {
    let root = dir.join(folder);
    if !root.is_dir() {
        return Err(DataError::Missing {
            what: format!("the N-MNIST {part} folder `{folder}`"),
            looked_for: vec![root],
            help: nmnist_help(),
        });
    }
    let mut events = Events { offsets: vec![0], times_us: Vec::new(), neurons: Vec::new(), bin_us, steps };
    let mut labels = Vec::new();
    for digit in 0..10u8 {
        let folder = root.join(digit.to_string());
        if !folder.is_dir() {
            continue;
        }
        let listing = std::fs::read_dir(&folder).map_err(|error| DataError::Io { path: folder.clone(), error })?;
        let mut files = Vec::new();
        for entry in listing {
            let path = entry.map_err(|error| DataError::Io { path: folder.clone(), error })?.path();
            if path.extension().is_some_and(|e| e == "bin") {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let bytes = std::fs::read(&path).map_err(|error| DataError::Io { path: path.clone(), error })?;
            let parsed = parse_nmnist_events(&bytes).map_err(|reason| DataError::Corrupt {
                path: path.clone(),
                kind: "N-MNIST event file",
                reason,
            })?;
            events.times_us.extend(parsed.iter().map(|e| e.t_us));
            events.neurons.extend(parsed.iter().map(|e| e.element()));
            events.offsets.push(events.times_us.len());
            labels.push(digit);
        }
    }
    if labels.is_empty() {
        return Err(DataError::Missing {
            what: format!("N-MNIST {part} samples"),
            looked_for: vec![root.join("<digit>").join("<id>.bin")],
            help: nmnist_help(),
        });
    }
    events.times_us.shrink_to_fit();
    events.neurons.shrink_to_fit();
    Ok(Split { n_features: NMNIST_ELEMENTS, features: Features::Events(events), labels })
}

// ---------------------------------------------------------------- augmentation

/// A square image of `side x side` pixels, shifted by up to `shift` of its side in each
/// direction and rotated by up to `rotate_deg` degrees about its centre (both drawn uniformly
/// from the key), sampled back with bilinear interpolation; pixels from outside are 0
/// (seeds/002's MNIST augmentation). The key makes it reproducible per (epoch, sample).
pub fn augment_image(image: &[f32], side: usize, shift: f64, rotate_deg: f64, key: u64) -> Vec<f32> {
    let prefix = uniform_prefix(key, 0xA06, 0);
    let draw = |c: u64| 2.0 * uniform_from(prefix, c) - 1.0;
    let (dx, dy) = (draw(0) * shift * side as f64, draw(1) * shift * side as f64);
    let angle = draw(2) * rotate_deg.to_radians();
    let (sin, cos) = angle.sin_cos();
    let centre = (side as f64 - 1.0) / 2.0;
    let pixel = |x: isize, y: isize| -> f64 {
        if x < 0 || y < 0 || x >= side as isize || y >= side as isize { 0.0 } else { f64::from(image[y as usize * side + x as usize]) }
    };
    let mut out = vec![0.0; side * side];
    for y in 0..side {
        for x in 0..side {
            // The inverse map: where output pixel (x, y) comes from in the input.
            let (u, v) = (x as f64 - centre - dx, y as f64 - centre - dy);
            let (sx, sy) = (cos * u + sin * v + centre, -sin * u + cos * v + centre);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let value = pixel(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + pixel(x0 + 1, y0) * fx * (1.0 - fy)
                + pixel(x0, y0 + 1) * (1.0 - fx) * fy
                + pixel(x0 + 1, y0 + 1) * fx * fy;
            out[y * side + x] = value as f32;
        }
    }
    out
}

// ---------------------------------------------------------------- random numbers

/// splitmix64: a stateless mixing function. Draw `k` of a stream is `mix(seed, k)`, so any
/// sharding of the work over threads gives the same numbers, and a GPU kernel can compute
/// the same draw from its indices alone.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) identified by a seed and up to three counters.
pub fn uniform(seed: u64, a: u64, b: u64, c: u64) -> f64 {
    uniform_from(uniform_prefix(seed, a, b), c)
}

/// The part of [`uniform`]'s mixing that depends on `(seed, a, b)` only, for loops that draw
/// many values with the same prefix.
pub fn uniform_prefix(seed: u64, a: u64, b: u64) -> u64 {
    splitmix64(splitmix64(seed ^ splitmix64(a)) ^ b)
}

/// `uniform(seed, a, b, c)` from `uniform_prefix(seed, a, b)`.
pub fn uniform_from(prefix: u64, c: u64) -> f64 {
    (random_bits(prefix, c) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The 64 random bits behind `uniform_from(prefix, c)`.
pub fn random_bits(prefix: u64, c: u64) -> u64 {
    splitmix64(prefix ^ c)
}

/// A 32-bit mixing function (Chris Wellons' `lowbias32`, a bijection with low bias): the
/// per-element stage of the model's `rand()` draws, cheap on 32-bit vector lanes.
pub fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// A sequential generator over the same mixing function, for data generation and shuffling.
#[derive(Clone, Debug)]
pub struct Stream {
    seed: u64,
    counter: u64,
}

impl Stream {
    pub fn new(seed: u64) -> Stream {
        Stream { seed, counter: 0 }
    }

    pub fn next_f64(&mut self) -> f64 {
        self.counter += 1;
        uniform(self.seed, self.counter, 0, 0)
    }

    /// A uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------- Yin-Yang

const R_SMALL: f64 = 0.1;
const R_BIG: f64 = 0.5;

/// The Yin-Yang class of a point in [0, 1]^2 inside the big circle (Kriener et al. 2021):
/// 0 and 1 for the two halves, 2 for the dots.
pub fn yin_yang_class(x: f64, y: f64) -> u8 {
    let d_right = ((x - 1.5 * R_BIG).powi(2) + (y - R_BIG).powi(2)).sqrt();
    let d_left = ((x - 0.5 * R_BIG).powi(2) + (y - R_BIG).powi(2)).sqrt();
    if d_right < R_SMALL || d_left < R_SMALL {
        return 2;
    }
    let yang = d_right <= R_SMALL || (d_left > R_SMALL && d_left <= 0.5 * R_BIG) || (y > R_BIG && d_right > 0.5 * R_BIG);
    u8::from(yang)
}

fn yin_yang_split(size: usize, seed: u64) -> Split {
    let mut stream = Stream::new(seed);
    let mut features = Vec::with_capacity(size * 5);
    let mut labels = Vec::with_capacity(size);
    for index in 0..size {
        // Class-balanced: classes in turn, points drawn by rejection.
        let goal = (index % 3) as u8;
        loop {
            let x = stream.next_f64() * 2.0 * R_BIG;
            let y = stream.next_f64() * 2.0 * R_BIG;
            if ((x - R_BIG).powi(2) + (y - R_BIG).powi(2)).sqrt() > R_BIG {
                continue;
            }
            if yin_yang_class(x, y) == goal {
                features.extend_from_slice(&[x as f32, y as f32, (1.0 - x) as f32, (1.0 - y) as f32, 1.0]);
                labels.push(goal);
                break;
            }
        }
    }
    // Shuffle so that batches are not ordered by class.
    let mut order: Vec<usize> = (0..size).collect();
    stream.shuffle(&mut order);
    let features = order.iter().flat_map(|i| features[i * 5..i * 5 + 5].to_vec()).collect();
    let labels = order.iter().map(|i| labels[*i]).collect();
    Split::floats(5, features, labels)
}

/// The Yin-Yang set: features (x, y, 1 - x, 1 - y, 1), the last a bias input.
pub fn yin_yang(train: usize, test: usize, seed: u64) -> Dataset {
    Dataset { train: yin_yang_split(train, seed), test: yin_yang_split(test, seed.wrapping_add(0x5EED)), classes: 3 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trip_and_corruption() {
        let bytes = write_idx(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 255]);
        let (dims, data) = parse_idx(&bytes, 3).unwrap();
        assert_eq!(dims, [2, 2, 2]);
        assert_eq!(data[7], 255);
        assert!(parse_idx(&bytes[..bytes.len() - 1], 3).unwrap_err().contains("data bytes"));
        assert!(parse_idx(&bytes, 1).unwrap_err().contains("dimensions"));
        assert!(parse_idx(&[1, 2], 3).is_err());
    }

    #[test]
    fn yin_yang_is_balanced_seeded_and_labelled_by_region() {
        let a = yin_yang(300, 60, 7);
        let b = yin_yang(300, 60, 7);
        assert_eq!(a, b);
        assert_ne!(a.train, yin_yang(300, 60, 8).train);
        for class in 0..3u8 {
            assert_eq!(a.train.labels.iter().filter(|l| **l == class).count(), 100);
        }
        for i in 0..a.train.len() {
            let s = a.train.sample(i);
            assert_eq!(yin_yang_class(f64::from(s[0]), f64::from(s[1])), a.train.labels[i]);
            assert!((s[0] + s[2] - 1.0).abs() < 1e-6 && s[4] == 1.0);
        }
        // The dots are the small circles around (0.25, 0.5) and (0.75, 0.5).
        assert_eq!(yin_yang_class(0.25, 0.5), 2);
        assert_eq!(yin_yang_class(0.75, 0.5), 2);
    }

    #[test]
    fn uniform_draws_are_in_range_and_look_uniform() {
        let draws: Vec<f64> = (0..10_000).map(|i| uniform(1, i, 2, 3)).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn augmentation_without_shift_or_rotation_is_the_identity_and_otherwise_moves_pixels() {
        let image: Vec<f32> = (0..28 * 28).map(|i| ((i * 37) % 256) as f32 / 255.0).collect();
        assert_eq!(augment_image(&image, 28, 0.0, 0.0, 5), image);
        let moved = augment_image(&image, 28, 0.1, 20.0, 5);
        assert_ne!(moved, image);
        assert_eq!(moved, augment_image(&image, 28, 0.1, 20.0, 5), "the same key gives the same image");
        assert_ne!(moved, augment_image(&image, 28, 0.1, 20.0, 6), "another key another image");
        // A centred dot stays within the shift's reach of the centre.
        let mut dot = vec![0.0f32; 28 * 28];
        dot[14 * 28 + 14] = 1.0;
        let out = augment_image(&dot, 28, 0.1, 0.0, 9);
        let (mut cx, mut cy, mut mass) = (0.0, 0.0, 0.0);
        for (k, v) in out.iter().enumerate() {
            cx += (k % 28) as f64 * f64::from(*v);
            cy += (k / 28) as f64 * f64::from(*v);
            mass += f64::from(*v);
        }
        assert!((mass - 1.0).abs() < 1e-6 && (cx / mass - 14.0).abs() <= 2.8 + 1e-9 && (cy / mass - 14.0).abs() <= 2.8 + 1e-9);
    }
}
