//! The float type a run computes in. Training runs in `f32`, as every peer does; `f64` stays
//! available (`--precision f64`) from the same code: the state, the oracle, the kernels and the
//! JIT are generic over [`Real`], never written twice.

use std::cell::RefCell;
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};
use std::thread::LocalKey;

/// A float type the engines can compute in: `f32` or `f64`.
pub trait Real: num_traits::Float + AddAssign + SubAssign + MulAssign + Sum + Default + Debug + Display + Send + Sync + 'static {
    /// `f32` or `f64`, as `--precision` spells it.
    const NAME: &'static str;
    /// Bytes per value.
    const BYTES: usize;
    /// Right shift that keeps the bits of a 32-bit random word that this type holds exactly
    /// (see [`Real::unit`]).
    const UNIT_SHIFT: u32;

    /// The nearest value of this type.
    fn of(value: f64) -> Self;

    fn into_f64(self) -> f64;

    /// A uniform draw in [0, 1) from 32 random bits: the top bits this type holds exactly (24
    /// for f32, all 32 for f64) scaled down, so that the JIT computes the same value.
    fn unit(bits: u32) -> Self;

    /// This thread's pool of spare buffers of this type (see [`crate::exec::pool`]).
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
}

thread_local! {
    static POOL_F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static POOL_F64: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

impl Real for f32 {
    const NAME: &'static str = "f32";
    const BYTES: usize = 4;
    const UNIT_SHIFT: u32 = 8;

    fn of(value: f64) -> f32 {
        value as f32
    }

    fn into_f64(self) -> f64 {
        f64::from(self)
    }

    fn unit(bits: u32) -> f32 {
        (bits >> Self::UNIT_SHIFT) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<f32>>>> {
        &POOL_F32
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    const BYTES: usize = 8;
    const UNIT_SHIFT: u32 = 0;

    fn of(value: f64) -> f64 {
        value
    }

    fn into_f64(self) -> f64 {
        self
    }

    fn unit(bits: u32) -> f64 {
        f64::from(bits) * (1.0 / (1u64 << 32) as f64)
    }

    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<f64>>>> {
        &POOL_F64
    }
}

/// The precision a run computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    F64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_draws_are_in_range_and_exact() {
        for bits in [0u32, 1, u32::MAX, 0x8000_0000, 0x1234_5678] {
            let (a, b) = (f32::unit(bits), f64::unit(bits));
            assert!((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b), "{bits:x}: {a} {b}");
            // The f32 draw is the f64 draw truncated to 24 bits: never above it.
            assert!(f64::from(a) <= b && b - f64::from(a) < 1.0 / (1u64 << 24) as f64);
        }
    }
}
