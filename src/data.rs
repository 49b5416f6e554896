//! Data sets: MNIST from IDX files (gz or raw) and the Yin-Yang set generated in-process, plus
//! the counter-based random numbers every encoder and generator uses.
//!
//! A data set is a list of samples, each a feature vector in [0, 1] and a class label. Errors
//! name the files that were expected and where they were looked for.

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
/// pixels, kept at a quarter of the memory: 47 MB instead of 188 MB for the training set).
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    Floats(Vec<f32>),
    Bytes(Vec<u8>),
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

    /// Sample `index`'s features: borrowed when stored as floats, converted from bytes.
    pub fn sample(&self, index: usize) -> std::borrow::Cow<'_, [f32]> {
        let range = index * self.n_features..(index + 1) * self.n_features;
        match &self.features {
            Features::Floats(values) => std::borrow::Cow::Borrowed(&values[range]),
            Features::Bytes(bytes) => std::borrow::Cow::Owned(bytes[range].iter().map(|b| f32::from(*b) / 255.0).collect()),
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
    /// None of the candidate files for one part of the set exists.
    Missing {
        what: &'static str,
        looked_for: Vec<PathBuf>,
    },
    /// A file exists but is not a valid IDX file of the expected kind.
    Corrupt {
        path: PathBuf,
        reason: String,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Missing { what, looked_for } => {
                let list: Vec<String> = looked_for.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "MNIST {what} not found; looked for {}. Set SNNC_MNIST_DIR or pass --data DIR to the folder holding \
                     train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and \
                     t10k-labels-idx1-ubyte.gz (gz or raw)",
                    list.join(", ")
                )
            }
            DataError::Corrupt { path, reason } => write!(f, "{} is not a valid MNIST IDX file: {reason}", path.display()),
            DataError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for DataError {}

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
    let train = read_split(dir, "train")?;
    let test = read_split(dir, "t10k")?;
    Ok(Dataset { train, test, classes: 10 })
}

fn read_split(dir: &Path, prefix: &str) -> Result<Split, DataError> {
    let (images_path, images) = read_first(dir, &format!("{prefix}-images-idx3-ubyte"), "images")?;
    let (labels_path, labels) = read_first(dir, &format!("{prefix}-labels-idx1-ubyte"), "labels")?;
    let (dims, pixels) = parse_idx(&images, 3).map_err(|reason| DataError::Corrupt { path: images_path.clone(), reason })?;
    let (label_dims, labels) = parse_idx(&labels, 1).map_err(|reason| DataError::Corrupt { path: labels_path.clone(), reason })?;
    if dims[0] != label_dims[0] {
        return Err(DataError::Corrupt {
            path: labels_path,
            reason: format!("{} labels for {} images in {}", label_dims[0], dims[0], images_path.display()),
        });
    }
    if let Some(bad) = labels.iter().find(|l| **l > 9) {
        return Err(DataError::Corrupt { path: labels_path, reason: format!("label {bad} is not a digit") });
    }
    // The pixels stay bytes, in the buffer they were read into (its header dropped).
    let (header, n_features, labels) = (images.len() - pixels.len(), dims[1] * dims[2], labels.to_vec());
    let mut images = images;
    images.drain(..header);
    images.shrink_to_fit();
    Ok(Split { n_features, features: Features::Bytes(images), labels })
}

/// Reads `name.gz` or `name`, whichever exists first.
fn read_first(dir: &Path, name: &str, what: &'static str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let candidates = [dir.join(format!("{name}.gz")), dir.join(name)];
    for path in &candidates {
        if !path.exists() {
            continue;
        }
        let raw = std::fs::read(path).map_err(|error| DataError::Io { path: path.clone(), error })?;
        if path.extension().is_some_and(|e| e == "gz") {
            let mut bytes = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut bytes)
                .map_err(|error| DataError::Corrupt { path: path.clone(), reason: format!("gzip: {error}") })?;
            return Ok((path.clone(), bytes));
        }
        return Ok((path.clone(), raw));
    }
    Err(DataError::Missing { what, looked_for: candidates.to_vec() })
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
