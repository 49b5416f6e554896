//! The short vector loops of the event-driven kernels (a spike adds a run of weights, or of
//! weights times a value; a gather sums a run of products), compiled twice: for the baseline x86-64 that the binary targets
//! (SSE2, four f32 lanes) and, where the CPU has it, for AVX2 (eight lanes), chosen at run
//! time. Both versions do the same operations in the same order (no fused multiply-add, the
//! same eight partial sums), so results are bit-identical whichever runs.

use crate::exec::real::Real;

/// Whether this CPU runs the AVX2 versions.
#[inline]
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y += a x`.
#[inline]
pub fn axpy<F: Real>(a: F, x: &[F], y: &mut [F]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has AVX2.
        return unsafe { axpy_avx2(a, x, y) };
    }
    axpy_any(a, x, y)
}

/// `y += x`: a spike's weight row added to its output row (the event-driven products).
#[inline]
pub fn add<F: Real>(x: &[F], y: &mut [F]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has AVX2.
        return unsafe { add_avx2(x, y) };
    }
    add_any(x, y)
}

/// `<a, b>`, in eight independent partial sums (lanes) added at the end: one running sum
/// would be a chain of dependent additions, which the compiler may not reorder.
#[inline]
pub fn dot<F: Real>(a: &[F], b: &[F]) -> F {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has AVX2.
        return unsafe { dot_avx2(a, b) };
    }
    dot_any(a, b)
}

#[inline(always)]
fn axpy_any<F: Real>(a: F, x: &[F], y: &mut [F]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * *x;
    }
}

#[inline(always)]
fn add_any<F: Real>(x: &[F], y: &mut [F]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += *x;
    }
}

#[inline(always)]
fn dot_any<F: Real>(a: &[F], b: &[F]) -> F {
    const LANES: usize = 8;
    let len = a.len().min(b.len());
    let (a_chunks, a_tail) = a[..len].as_chunks::<LANES>();
    let (b_chunks, b_tail) = b[..len].as_chunks::<LANES>();
    let mut lanes = [F::zero(); LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for k in 0..LANES {
            lanes[k] += x[k] * y[k];
        }
    }
    let tail = a_tail.iter().zip(b_tail).fold(F::zero(), |acc, (x, y)| acc + *x * *y);
    lanes.iter().fold(tail, |acc, v| acc + *v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn axpy_avx2<F: Real>(a: F, x: &[F], y: &mut [F]) {
    axpy_any(a, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_avx2<F: Real>(x: &[F], y: &mut [F]) {
    add_any(x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2<F: Real>(a: &[F], b: &[F]) -> F {
    dot_any(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both versions agree bit for bit with the plain definitions' lane order, at every
    /// length around the lane count.
    #[test]
    fn both_versions_agree() {
        for len in 0..40 {
            let x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 1.3).cos()).collect();
            let mut y1 = b.clone();
            let mut y2 = b.clone();
            axpy(0.7, &x, &mut y1);
            axpy_any(0.7, &x, &mut y2);
            assert_eq!(y1, y2);
            add(&x, &mut y1);
            add_any(&x, &mut y2);
            assert_eq!(y1, y2);
            assert_eq!(dot(&x, &b).to_bits(), dot_any(&x, &b).to_bits());
            let exact: f64 = x.iter().zip(&b).map(|(p, q)| *p as f64 * *q as f64).sum();
            assert!((dot(&x, &b) as f64 - exact).abs() < 1e-5, "{len}");
        }
    }
}
