//! 2-d pooling, channels first: the sum, the mean (over the whole window, padding included, as
//! PyTorch's `AvgPool2d` by default) or the maximum (padding never wins) of each window, times
//! the connection's one weight. NIR's `SumPool2d` and `AvgPool2d` map onto the first two. The
//! same loops serve the oracle and the compiled engine: a window's few additions are no
//! product worth a GEMM.

use crate::exec::kernels::conv::chw;
use crate::exec::real::Real;
use crate::ir::{Pool, PoolKind};

/// One pooling connection between `[c, in_h, in_w]` and `[c, out_h, out_w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pooling {
    pub pool: Pool,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Pooling {
    pub fn of(pool: &Pool, source: &[usize], target: &[usize]) -> Option<Pooling> {
        let (&[channels, in_h, in_w], &[_, out_h, out_w]) = (&chw(source)?, &chw(target)?);
        Some(Pooling { pool: *pool, channels, in_h, in_w, out_h, out_w })
    }

    /// Calls `f(output index, inputs of its window)` for every output of one image.
    fn for_each_window(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
        let Pool { kernel, stride, padding, .. } = self.pool;
        for c in 0..self.channels {
            for oy in 0..self.out_h {
                for ox in 0..self.out_w {
                    let rows = (0..kernel[0]).filter_map(|ky| (oy * stride[0] + ky).checked_sub(padding[0]).filter(|iy| *iy < self.in_h));
                    let mut inputs = rows.flat_map(|iy| {
                        (0..kernel[1])
                            .filter_map(move |kx| (ox * stride[1] + kx).checked_sub(padding[1]).filter(|ix| *ix < self.in_w))
                            .map(move |ix| (c * self.in_h + iy) * self.in_w + ix)
                    });
                    f((c * self.out_h + oy) * self.out_w + ox, &mut inputs);
                }
            }
        }
    }

    /// What one window gives, before the weight: its sum, its mean over the whole window, or
    /// its maximum and where it is (the first of equal values).
    fn reduce<F: Real>(&self, x: &[F], inputs: &mut dyn Iterator<Item = usize>) -> (F, Option<usize>) {
        match self.pool.kind {
            PoolKind::Sum | PoolKind::Avg => {
                let sum = inputs.fold(F::zero(), |acc, i| acc + x[i]);
                let area = F::of((self.pool.kernel[0] * self.pool.kernel[1]) as f64);
                (if self.pool.kind == PoolKind::Avg { sum / area } else { sum }, None)
            }
            PoolKind::Max => {
                let best = inputs.fold(None, |best: Option<usize>, i| match best {
                    Some(b) if x[b] >= x[i] => Some(b),
                    _ => Some(i),
                });
                (best.map_or(F::zero(), |b| x[b]), best)
            }
        }
    }

    /// `y += w pool(x)` for one image.
    pub fn forward<F: Real>(&self, w: F, x: &[F], y: &mut [F]) {
        self.for_each_window(|o, inputs| y[o] += w * self.reduce(x, inputs).0);
    }

    /// The adjoint for one image: `dw += <g, pool(x)>`, `dx += w pool^T(g)` (a maximum's
    /// gradient goes to the input that won).
    pub fn backward<F: Real>(&self, w: F, x: &[F], g: &[F], dw: &mut F, dx: &mut [F]) {
        let area = F::of((self.pool.kernel[0] * self.pool.kernel[1]) as f64);
        self.for_each_window(|o, inputs| {
            if g[o] == F::zero() {
                return;
            }
            let window: Vec<usize> = inputs.collect();
            let (value, best) = self.reduce(x, &mut window.iter().copied());
            *dw += g[o] * value;
            match self.pool.kind {
                PoolKind::Sum => window.iter().for_each(|i| dx[*i] += w * g[o]),
                PoolKind::Avg => window.iter().for_each(|i| dx[*i] += w * g[o] / area),
                PoolKind::Max => {
                    if let Some(b) = best {
                        dx[b] += w * g[o];
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooling(kind: PoolKind, kernel: usize, stride: usize, padding: usize, in_hw: (usize, usize)) -> Pooling {
        let out = |size: usize| (size + 2 * padding - kernel) / stride + 1;
        Pooling {
            pool: Pool { kind, kernel: [kernel; 2], stride: [stride; 2], padding: [padding; 2] },
            channels: 2,
            in_h: in_hw.0,
            in_w: in_hw.1,
            out_h: out(in_hw.0),
            out_w: out(in_hw.1),
        }
    }

    /// A 4x4 image 1..16 per channel (the second channel negated), 2x2 windows, stride 2.
    #[test]
    fn windows_by_hand() {
        let x: Vec<f64> = (1..=16).map(f64::from).chain((1..=16).map(|v| -f64::from(v))).collect();
        let run = |kind| {
            let p = pooling(kind, 2, 2, 0, (4, 4));
            let mut y = vec![0.0; 8];
            p.forward(1.0, &x, &mut y);
            y
        };
        assert_eq!(run(PoolKind::Sum), vec![14.0, 22.0, 46.0, 54.0, -14.0, -22.0, -46.0, -54.0]);
        assert_eq!(run(PoolKind::Avg), vec![3.5, 5.5, 11.5, 13.5, -3.5, -5.5, -11.5, -13.5]);
        assert_eq!(run(PoolKind::Max), vec![6.0, 8.0, 14.0, 16.0, -1.0, -3.0, -9.0, -11.0]);
        // Padding: a 3x3 window at stride 2 with padding 1 on the 4x4 image; the corner window
        // holds 1, 2, 5, 6 and the padding, which the mean counts and the maximum ignores.
        let p = pooling(PoolKind::Avg, 3, 2, 1, (4, 4));
        let mut y = vec![0.0; 2 * p.out_h * p.out_w];
        p.forward(2.0, &x, &mut y);
        assert_eq!(y[0], 2.0 * 14.0 / 9.0);
        let p = pooling(PoolKind::Max, 3, 2, 1, (4, 4));
        let mut y = vec![0.0; 2 * p.out_h * p.out_w];
        p.forward(1.0, &x, &mut y);
        assert_eq!(y[p.out_h * p.out_w], -1.0, "the negated channel's corner: padding never wins");
    }

    /// Windows of 1 x 2 at stride [1, 2] sum neighbouring pairs of each row; a [channels,
    /// length] shape is one row.
    #[test]
    fn rectangular_and_one_dimensional_windows() {
        let x: Vec<f64> = (1..=16).map(f64::from).collect();
        let pool = Pool { kind: PoolKind::Sum, kernel: [1, 2], stride: [1, 2], padding: [0, 0] };
        let p = Pooling::of(&pool, &[1, 4, 4], &[1, 4, 2]).expect("3-d shapes");
        let mut y = vec![0.0; 8];
        p.forward(1.0, &x, &mut y);
        assert_eq!(y, vec![3.0, 7.0, 11.0, 15.0, 19.0, 23.0, 27.0, 31.0]);
        let pool = Pool { kind: PoolKind::Max, kernel: [1, 3], stride: [1, 3], padding: [0, 1] };
        let p = Pooling::of(&pool, &[2, 8], &[2, 3]).expect("2-d shapes");
        let mut y = vec![0.0; 6];
        p.forward(1.0, &x, &mut y);
        assert_eq!(y, vec![2.0, 5.0, 8.0, 10.0, 13.0, 16.0]);
    }

    /// The backward pass against central differences of <g, w pool(x)>, odd shapes, overlapping
    /// windows and padding, for the weight and every input.
    #[test]
    fn gradients_match_finite_differences() {
        for kind in [PoolKind::Sum, PoolKind::Avg, PoolKind::Max] {
            for (kernel, stride, padding) in [(2, 2, 0), (3, 2, 1), (3, 1, 1)] {
                let p = pooling(kind, kernel, stride, padding, (5, 7));
                let n_in = 2 * 5 * 7;
                let n_out = 2 * p.out_h * p.out_w;
                // Distinct values, so that a maximum has one winner and moves smoothly.
                let x: Vec<f64> = (0..n_in).map(|i| ((i * 37 % 101) as f64) / 17.0 - 2.0).collect();
                let g: Vec<f64> = (0..n_out).map(|o| ((o * 13 % 7) as f64) / 3.0 - 1.0).collect();
                let w = 1.3;
                let loss = |w: f64, x: &[f64]| {
                    let mut y = vec![0.0; n_out];
                    p.forward(w, x, &mut y);
                    y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
                };
                let (mut dw, mut dx) = (0.0, vec![0.0; n_in]);
                p.backward(w, &x, &g, &mut dw, &mut dx);
                let h = 1e-6;
                let numeric = (loss(w + h, &x) - loss(w - h, &x)) / (2.0 * h);
                assert!((dw - numeric).abs() < 1e-6, "{kind:?} {kernel}/{stride}/{padding} weight: {dw} vs {numeric}");
                for i in 0..n_in {
                    let (mut plus, mut minus) = (x.clone(), x.clone());
                    plus[i] += h;
                    minus[i] -= h;
                    let numeric = (loss(w, &plus) - loss(w, &minus)) / (2.0 * h);
                    assert!((dx[i] - numeric).abs() < 1e-6, "{kind:?} {kernel}/{stride}/{padding} input {i}: {} vs {numeric}", dx[i]);
                }
            }
        }
    }
}
