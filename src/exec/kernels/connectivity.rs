//! The per-sample product `y += x W` of every connectivity and its adjoint, written out: what
//! the oracle runs. The compiled engine's schedules use [`super::gemm`], [`super::events`] and
//! [`super::conv`]'s fast paths where they apply.

use crate::exec::kernels::conv::{Geometry, reference_adjoint, reference_forward, reference_weight_grad};
use crate::exec::kernels::pool::Pooling;
use crate::exec::real::Real;
use crate::ir::Connectivity;

/// Where pair `k`'s weight is: `k`, or 0 when one weight serves every pair
/// ([`crate::ir::Projection::shares_one_weight`]).
#[inline]
pub fn shared<F>(w: &[F], k: usize) -> usize {
    if w.len() == 1 { 0 } else { k }
}

/// `y += x W` for one sample.
pub fn project<F: Real>(connectivity: &Connectivity, w: &[F], x: &[F], y: &mut [F], in_shape: &[usize], out_shape: &[usize]) {
    let (n_pre, n_post) = (x.len(), y.len());
    match connectivity {
        Connectivity::Dense => {
            for (i, xi) in x.iter().enumerate() {
                if *xi != F::zero() {
                    for (j, yj) in y.iter_mut().enumerate() {
                        *yj += *xi * w[i * n_post + j];
                    }
                }
            }
        }
        Connectivity::OneToOne => {
            for i in 0..n_pre.min(n_post) {
                y[i] += x[i] * w[shared(w, i)];
            }
        }
        Connectivity::AllToAllButSelf => {
            // Spikes are mostly zero: skip their rows.
            for (i, xi) in x.iter().enumerate().filter(|(_, xi)| **xi != F::zero()) {
                for (j, yj) in y.iter_mut().enumerate() {
                    if i != j {
                        *yj += *xi * w[shared(w, i * n_post + j)];
                    }
                }
            }
        }
        Connectivity::Conv2d(_) | Connectivity::ConvTranspose2d(_) => {
            let Some((geo, transposed)) = Geometry::of(connectivity, in_shape, out_shape) else { return };
            if transposed { reference_adjoint(&geo, w, x, y) } else { reference_forward(&geo, w, x, y) }
        }
        Connectivity::Pool2d(pool) => {
            if let Some(pooling) = Pooling::of(pool, in_shape, out_shape) {
                pooling.forward(w[0], x, y);
            }
        }
    }
}

/// The adjoint of [`project`]: `dW += x (x) g`, `dx += W g`.
#[allow(clippy::too_many_arguments)]
pub fn project_backward<F: Real>(
    connectivity: &Connectivity,
    w: &[F],
    x: &[F],
    g: &[F],
    dw: &mut [F],
    dx: &mut [F],
    in_shape: &[usize],
    out_shape: &[usize],
) {
    let n_post = g.len();
    match connectivity {
        Connectivity::Dense | Connectivity::AllToAllButSelf => {
            let skip_self = matches!(connectivity, Connectivity::AllToAllButSelf);
            for (i, xi) in x.iter().enumerate() {
                let mut sum = F::zero();
                for j in 0..n_post {
                    if skip_self && i == j {
                        continue;
                    }
                    dw[shared(dw, i * n_post + j)] += *xi * g[j];
                    sum += w[shared(w, i * n_post + j)] * g[j];
                }
                dx[i] += sum;
            }
        }
        Connectivity::OneToOne => {
            for i in 0..x.len().min(n_post) {
                dw[shared(dw, i)] += x[i] * g[i];
                dx[i] += w[shared(w, i)] * g[i];
            }
        }
        Connectivity::Conv2d(_) | Connectivity::ConvTranspose2d(_) => {
            let Some((geo, transposed)) = Geometry::of(connectivity, in_shape, out_shape) else { return };
            // A transposed convolution is the adjoint of the convolution from its target to its
            // source: its input gradient is that convolution, its weight gradient that
            // convolution's with the roles of input and output swapped.
            if transposed {
                reference_forward(&geo, w, g, dx);
                reference_weight_grad(&geo, g, x, dw);
            } else {
                reference_adjoint(&geo, w, g, dx);
                reference_weight_grad(&geo, x, g, dw);
            }
        }
        Connectivity::Pool2d(pool) => {
            if let Some(pooling) = Pooling::of(pool, in_shape, out_shape) {
                pooling.backward(w[0], x, g, &mut dw[0], dx);
            }
        }
    }
}
