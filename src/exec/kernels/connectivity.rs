//! The per-sample product `y += x W` of the connectivities that are not dense (one-to-one,
//! all-to-all but self, 2-d convolution and transposed convolution) and its adjoint. Dense
//! projections go through [`super::gemm`] and [`super::events`] instead.

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
        Connectivity::Conv2d { kernel, stride, padding } => {
            let (Some([in_c, h, wd]), Some([out_c, oh, ow])) = (chw(in_shape), chw(out_shape)) else { return };
            let (k, s, pad) = (*kernel, *stride, *padding as isize);
            for oc in 0..out_c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = F::zero();
                        for ic in 0..in_c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s + ky) as isize - pad;
                                    let ix = (ox * s + kx) as isize - pad;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                        sum += x[(ic * h + iy as usize) * wd + ix as usize] * w[((oc * in_c + ic) * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                        y[(oc * oh + oy) * ow + ox] += sum;
                    }
                }
            }
        }
        Connectivity::ConvTranspose2d { kernel, stride, padding, .. } => {
            let (Some([in_c, h, wd]), Some([out_c, oh, ow])) = (chw(in_shape), chw(out_shape)) else { return };
            let (k, s, pad) = (*kernel, *stride, *padding as isize);
            for ic in 0..in_c {
                for iy in 0..h {
                    for ix in 0..wd {
                        let xv = x[(ic * h + iy) * wd + ix];
                        if xv == F::zero() {
                            continue;
                        }
                        for oc in 0..out_c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let oy = (iy * s + ky) as isize - pad;
                                    let ox = (ix * s + kx) as isize - pad;
                                    if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                                        y[(oc * oh + oy as usize) * ow + ox as usize] += xv * w[((oc * in_c + ic) * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn chw(shape: &[usize]) -> Option<[usize; 3]> {
    match shape {
        [c, h, w] => Some([*c, *h, *w]),
        _ => None,
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
        Connectivity::Conv2d { kernel, stride, padding } => {
            let (Some([in_c, h, wd]), Some([out_c, oh, ow])) = (chw(in_shape), chw(out_shape)) else { return };
            let (k, st, pad) = (*kernel, *stride, *padding as isize);
            for oc in 0..out_c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let go = g[(oc * oh + oy) * ow + ox];
                        if go == F::zero() {
                            continue;
                        }
                        for ic in 0..in_c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * st + ky) as isize - pad;
                                    let ix = (ox * st + kx) as isize - pad;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                        let xi = (ic * h + iy as usize) * wd + ix as usize;
                                        let wi = ((oc * in_c + ic) * k + ky) * k + kx;
                                        dw[wi] += go * x[xi];
                                        dx[xi] += go * w[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Connectivity::ConvTranspose2d { kernel, stride, padding, .. } => {
            let (Some([in_c, h, wd]), Some([out_c, oh, ow])) = (chw(in_shape), chw(out_shape)) else { return };
            let (k, st, pad) = (*kernel, *stride, *padding as isize);
            for ic in 0..in_c {
                for iy in 0..h {
                    for ix in 0..wd {
                        let xi = (ic * h + iy) * wd + ix;
                        for oc in 0..out_c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let oy = (iy * st + ky) as isize - pad;
                                    let ox = (ix * st + kx) as isize - pad;
                                    if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                                        let go = g[(oc * oh + oy as usize) * ow + ox as usize];
                                        let wi = ((oc * in_c + ic) * k + ky) * k + kx;
                                        dw[wi] += go * x[xi];
                                        dx[xi] += go * w[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
