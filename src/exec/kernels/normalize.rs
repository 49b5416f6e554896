//! `l2_normalize`: each row of a state a connection carries divided by its Euclidean norm
//! (PyTorch's `F.normalize(x, dim = 1)`), forwards and backwards.

use crate::exec::real::Real;
use crate::ir::L2_NORM_FLOOR;

/// The norm a row is divided by: its Euclidean norm, floored so that a zero row stays zero.
fn norm<F: Real>(row: &[F]) -> F {
    let sum: F = row.iter().map(|x| *x * *x).sum();
    sum.sqrt().max(F::of(L2_NORM_FLOOR))
}

/// Divides each row of `n` values of `x` by its norm, in place.
pub fn l2_normalize_rows<F: Real>(x: &mut [F], n: usize) {
    if n == 0 {
        return;
    }
    for row in x.chunks_exact_mut(n) {
        let scale = norm(row).recip();
        row.iter_mut().for_each(|v| *v *= scale);
    }
}

/// Adds to `dx` the gradient with respect to the rows `x` (before normalising) given `g`, the
/// gradient with respect to the normalised rows: `(g - y (y . g)) / |x|` with `y = x / |x|`,
/// and `g / floor` where the norm is floored (there the map is `x / floor`).
pub fn l2_normalize_rows_backward<F: Real>(x: &[F], g: &[F], n: usize, dx: &mut [F]) {
    if n == 0 {
        return;
    }
    for ((xr, gr), dr) in x.chunks_exact(n).zip(g.chunks_exact(n)).zip(dx.chunks_exact_mut(n)) {
        let sum: F = xr.iter().map(|x| *x * *x).sum();
        let length = sum.sqrt();
        if length <= F::of(L2_NORM_FLOOR) {
            let scale = F::of(L2_NORM_FLOOR).recip();
            dr.iter_mut().zip(gr).for_each(|(d, g)| *d += *g * scale);
            continue;
        }
        let inv = length.recip();
        let dot: F = xr.iter().zip(gr).map(|(x, g)| *x * inv * *g).sum();
        for ((d, x), g) in dr.iter_mut().zip(xr).zip(gr) {
            *d += (*g - *x * inv * dot) * inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_unit_norm_and_zero_stays_zero() {
        let mut x = vec![3.0f64, 4.0, 0.0, 0.0, 0.0, 0.0];
        l2_normalize_rows(&mut x, 3);
        let expected = [0.6, 0.8, 0.0, 0.0, 0.0, 0.0];
        assert!(x.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15), "{x:?}");
    }

    #[test]
    fn backward_matches_finite_differences() {
        let x = vec![0.3f64, -1.2, 0.7, 2.0, 0.1, -0.4];
        let g = vec![0.5f64, 0.25, -1.0, -0.3, 0.8, 0.2];
        let loss = |x: &[f64]| {
            let mut y = x.to_vec();
            l2_normalize_rows(&mut y, 3);
            y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut dx = vec![0.0; 6];
        l2_normalize_rows_backward(&x, &g, 3, &mut dx);
        for i in 0..6 {
            let h = 1e-6;
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!((fd - dx[i]).abs() < 1e-8, "{i}: {fd} vs {}", dx[i]);
        }
    }
}
