//! Dense products through the `gemm` crate (1.6-1.75x matrixmultiply at the runtime's shapes,
//! `cargo bench --bench gemm`), in either precision.

use rayon::prelude::*;

use crate::exec::real::Real;

/// `c[m x n] += a[m x k] b[k x n]` with every operand given by (row stride, column stride),
/// on this thread.
///
/// # Safety
/// The pointers must address matrices of the stated shapes and strides, and `c` must not
/// overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_add<F: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: *const F,
    rsa: isize,
    csa: isize,
    b: *const F,
    rsb: isize,
    csb: isize,
    c: *mut F,
    rsc: isize,
    csc: isize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: forwarded from the caller; `gemm` takes column strides before row strides and
    // computes c = 1 * c + 1 * a b.
    unsafe {
        gemm::gemm(m, n, k, c, csc, rsc, true, a, csa, rsa, b, csb, rsb, F::one(), F::one(), false, false, false, gemm::Parallelism::None)
    }
}

/// `y[b, j] += sum_i x[b, i] w[i, j]` for `rows` rows, all row-major.
pub fn dense<F: Real>(rows: usize, n_pre: usize, n_post: usize, x: &[F], w: &[F], y: &mut [F]) {
    assert!(x.len() >= rows * n_pre && w.len() >= n_pre * n_post && y.len() >= rows * n_post, "GEMM operands have the stated shapes");
    // SAFETY: shapes checked above; y is a separate slice.
    unsafe {
        gemm_add(rows, n_pre, n_post, x.as_ptr(), n_pre as isize, 1, w.as_ptr(), n_post as isize, 1, y.as_mut_ptr(), n_post as isize, 1)
    }
}

/// `dx[rows x n_pre] += g[rows x n_post] w^T` for `w` of `n_pre x n_post`, all row-major.
pub fn dense_input_grad<F: Real>(rows: usize, n_pre: usize, n_post: usize, g: &[F], w: &[F], dx: &mut [F]) {
    assert!(g.len() >= rows * n_post && w.len() >= n_pre * n_post && dx.len() >= rows * n_pre, "GEMM operands have the stated shapes");
    // SAFETY: shapes checked above; W is read transposed through its strides.
    unsafe {
        gemm_add(rows, n_post, n_pre, g.as_ptr(), n_post as isize, 1, w.as_ptr(), 1, n_post as isize, dx.as_mut_ptr(), n_pre as isize, 1)
    }
}

/// [`dense_input_grad`] at the elements set in `at` (bits `start + row * n_pre + i`) alone: a
/// dot product per element, for an input gradient only read where the source spiked
/// ([`crate::ir::grad::spike_gated`]). Rows in parallel.
#[allow(clippy::too_many_arguments)]
pub fn dense_input_grad_at<F: Real>(
    rows: usize,
    n_pre: usize,
    n_post: usize,
    g: &[F],
    w: &[F],
    dx: &mut [F],
    at: &crate::exec::kernels::bits::Bits,
    start: usize,
) {
    assert!(g.len() >= rows * n_post && w.len() >= n_pre * n_post && dx.len() >= rows * n_pre, "operands have the stated shapes");
    dx[..rows * n_pre].par_chunks_mut(n_pre.max(1)).zip(g[..rows * n_post].par_chunks(n_post.max(1))).enumerate().for_each(
        |(r, (dx, g))| {
            at.for_each_set(start + r * n_pre..start + (r + 1) * n_pre, |i| {
                dx[i] += w[i * n_post..(i + 1) * n_post].iter().zip(g).fold(F::zero(), |acc, (a, b)| acc + *a * *b);
            });
        },
    );
}

/// `dw[n_pre x n_post] += x[rows x n_pre]^T g[rows x n_post]`, all row-major.
pub fn dense_weight_grad<F: Real>(rows: usize, n_pre: usize, n_post: usize, x: &[F], g: &[F], dw: &mut [F]) {
    assert!(x.len() >= rows * n_pre && g.len() >= rows * n_post && dw.len() >= n_pre * n_post, "GEMM operands have the stated shapes");
    // SAFETY: shapes checked above; X is read transposed through its strides.
    unsafe {
        gemm_add(n_pre, rows, n_post, x.as_ptr(), 1, n_pre as isize, g.as_ptr(), n_post as isize, 1, dw.as_mut_ptr(), n_post as isize, 1)
    }
}

/// Columns per parallel block of the batch-level GEMMs: fixed, so that results do not depend
/// on the number of threads.
pub const COLUMN_BLOCK: usize = 128;

/// Raw pointers moved into rayon tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct SendPtr<F>(*mut F);
// SAFETY: each task writes only its own column block of the output.
unsafe impl<F> Send for SendPtr<F> {}
unsafe impl<F> Sync for SendPtr<F> {}

impl<F> SendPtr<F> {
    /// The pointer, taken through a method so that closures capture the whole `Send` wrapper.
    fn get(self) -> *mut F {
        self.0
    }
}

/// `c[m x n] += a[m x k] b[k x n]` with `a` given by strides, `b` and `c` row-major, split into
/// column blocks of [`COLUMN_BLOCK`] computed in parallel. Returns the number of blocks.
#[allow(clippy::too_many_arguments)]
pub fn gemm_columns<F: Real>(m: usize, k: usize, n: usize, a: &[F], rsa: isize, csa: isize, b: &[F], c: &mut [F]) -> usize {
    assert!(b.len() >= k * n && c.len() >= m * n, "GEMM operands have the stated shapes");
    let max_a = (m.saturating_sub(1) as isize * rsa + k.saturating_sub(1) as isize * csa) as usize;
    assert!(m == 0 || k == 0 || max_a < a.len(), "GEMM operand a has the stated shape");
    let c_ptr = SendPtr(c.as_mut_ptr());
    let blocks = n.div_ceil(COLUMN_BLOCK);
    (0..blocks).into_par_iter().for_each(|block| {
        let j0 = block * COLUMN_BLOCK;
        let width = COLUMN_BLOCK.min(n - j0);
        // SAFETY: shapes checked above; every block writes the columns [j0, j0 + width) of c
        // only, so the blocks never overlap.
        unsafe {
            gemm_add(m, k, width, a.as_ptr(), rsa, csa, b.as_ptr().add(j0), n as isize, 1, c_ptr.get().add(j0), n as isize, 1);
        }
    });
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_and_their_adjoints_match_the_definition() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let mut c = vec![0.0; m * n];
        dense(m, k, n, &a, &b, &mut c);
        let expected = naive(m, k, n, &a, &b);
        assert!(c.iter().zip(&expected).all(|(x, y)| (x - y).abs() < 1e-12));
        // dX = G W^T and dW = X^T G against the same products written out.
        let g: Vec<f64> = (0..m * n).map(|i| i as f64 - 4.0).collect();
        let mut dx = vec![0.0; m * k];
        dense_input_grad(m, k, n, &g, &b, &mut dx);
        let mut dw = vec![0.0; k * n];
        dense_weight_grad(m, k, n, &a, &g, &mut dw);
        for i in 0..m {
            for l in 0..k {
                let want: f64 = (0..n).map(|j| g[i * n + j] * b[l * n + j]).sum();
                assert!((dx[i * k + l] - want).abs() < 1e-12);
            }
        }
        for l in 0..k {
            for j in 0..n {
                let want: f64 = (0..m).map(|i| a[i * k + l] * g[i * n + j]).sum();
                assert!((dw[l * n + j] - want).abs() < 1e-12);
            }
        }
        let mut blocked = vec![0.0; m * n];
        gemm_columns(m, k, n, &a, k as isize, 1, &b, &mut blocked);
        assert_eq!(blocked, c);
    }
}
