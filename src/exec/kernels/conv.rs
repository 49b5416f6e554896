//! 2-d convolutions, channels first, with stride, padding, dilation and groups, over many
//! images at once (a trace's rows: every step of every sample).
//!
//! One geometry serves both connectivities: a convolution from source to target, and a
//! transposed convolution from source to target, which is the adjoint of the convolution from
//! target to source with the same weights. So three products cover both, forwards and
//! backwards:
//! - [`forward`]: `y += conv(x)` (a convolution's forward pass; a transposed one's input
//!   gradient);
//! - [`adjoint`]: `dx += conv^T(g)` (a convolution's input gradient; a transposed one's
//!   forward pass);
//! - [`weight_grad`]: `dW += d <g, conv(x)> / dW`.
//!
//! Each has a dense path, an im2col per image and per group and the `gemm` crate's f32/f64
//! kernels, and an event-driven path for binary spikes below a measured density
//! ([`event_crossover`]): a spike adds a kernel-sized patch of weights, and the weight gradient
//! accumulates only at spikes; where the spikes' own adjoint is read at spikes alone,
//! [`grads_at_spikes`] takes both gradients in one pass. Images run in parallel; weight
//! gradients are summed over fixed blocks of images in order, so that results do not depend on
//! the number of threads.
//! [`reference_forward`], [`reference_adjoint`] and [`reference_weight_grad`] are the
//! definitions written out, which the oracle runs.

use rayon::prelude::*;

use crate::exec::kernels::bits::{Bits, for_each_nonzero};
use crate::exec::kernels::events::Rows;
use crate::exec::kernels::gemm::gemm_add;
use crate::exec::kernels::simd::{axpy, dot};
use crate::exec::pool;
use crate::exec::real::Real;
use crate::ir::{Connectivity, Conv, Hw};

/// The products with an event-driven path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// [`forward`] from input spikes: a spike adds runs over its group's output channels.
    Forward,
    /// [`adjoint`] from output-side spikes: a spike adds runs over its group's input channels.
    Adjoint,
    /// [`weight_grad`] at spikes, with runs over the other side's channels of the group.
    WeightGrad,
}

/// Below this fraction of nonzero binary values, `product` runs event-driven: measured with
/// `cargo bench --bench conv` on the auto-encoder's 5x5 layers (f32, 2 threads, docs/results.md,
/// ninth session). Each spike adds runs of `run` channels per tap (see [`Geometry::run`]),
/// joined along kernel rows where the geometry allows, so the events pay at a higher density
/// where runs are long: with 16 or 32 channels they still win at 20% (the highest density
/// measured), with one channel below 4-5%. The bench reads spikes as values; the runtime
/// reads them from bits, which makes the events cheaper still.
pub fn event_crossover(product: Product, run: usize) -> f64 {
    match (product, run >= 16) {
        (Product::Forward | Product::Adjoint | Product::WeightGrad, true) => 0.20,
        // A forward pass with one-channel runs is the adjoint's kernel shape (not a layer of
        // the bench): the adjoint's measurement.
        (Product::Forward | Product::Adjoint, false) => 0.04,
        (Product::WeightGrad, false) => 0.05,
    }
}

/// Images per block of a weight gradient: fixed, so that sums do not depend on threads.
const IMAGES_PER_BLOCK: usize = 16;

/// A convolution from `in` to `out`: weights `[out_c, in_c / groups, kernel[0], kernel[1]]`;
/// sizes per axis, rows first. A 1-d convolution is the case `in_h = out_h = 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel: Hw,
    pub stride: Hw,
    pub padding: Hw,
    pub dilation: Hw,
    pub groups: usize,
}

/// A `[channels, height, width]` shape, or `[channels, length]` as one row.
pub fn chw(shape: &[usize]) -> Option<[usize; 3]> {
    match *shape {
        [c, h, w] => Some([c, h, w]),
        [c, l] => Some([c, 1, l]),
        _ => None,
    }
}

impl Geometry {
    /// The convolution a connectivity computes between `source` and `target` shapes, and
    /// whether the connection is its transpose (then `in` is the target and `out` the source).
    pub fn of(connectivity: &Connectivity, source: &[usize], target: &[usize]) -> Option<(Geometry, bool)> {
        let (conv, transposed) = match connectivity {
            Connectivity::Conv2d(conv) => (conv, false),
            Connectivity::ConvTranspose2d(conv) => (conv, true),
            _ => return None,
        };
        let (&[a_c, a_h, a_w], &[b_c, b_h, b_w]) = (&chw(source)?, &chw(target)?);
        let ((in_c, in_h, in_w), (out_c, out_h, out_w)) =
            if transposed { ((b_c, b_h, b_w), (a_c, a_h, a_w)) } else { ((a_c, a_h, a_w), (b_c, b_h, b_w)) };
        let Conv { kernel, stride, padding, dilation, groups, .. } = *conv;
        Some((Geometry { in_c, in_h, in_w, out_c, out_h, out_w, kernel, stride, padding, dilation, groups }, transposed))
    }

    pub fn in_len(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }

    pub fn out_len(&self) -> usize {
        self.out_c * self.out_h * self.out_w
    }

    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    fn in_group(&self) -> usize {
        self.in_c / self.groups
    }

    fn out_group(&self) -> usize {
        self.out_c / self.groups
    }

    /// The channels an event-driven `product` adds per spike and tap in one contiguous run:
    /// the group's output channels for a spike at the input, its input channels for one at the
    /// output.
    pub fn run(&self, product: Product, spikes: Spikes) -> usize {
        match (product, spikes) {
            (Product::Forward, _) | (Product::WeightGrad, Spikes::Input) => self.out_group(),
            (Product::Adjoint, _) | (Product::WeightGrad, Spikes::Output) => self.in_group(),
        }
    }

    /// Columns of one output channel's weights: the group's input channels times the taps.
    fn patch(&self) -> usize {
        self.in_group() * self.taps()
    }

    fn pixels(&self) -> usize {
        self.out_h * self.out_w
    }

    pub fn weights(&self) -> usize {
        self.out_c * self.patch()
    }

    /// The input row (`axis` 0) or column (`axis` 1) that output row or column `o` reads at
    /// tap `tap`, inside the input.
    #[inline]
    fn input_at(&self, axis: usize, o: usize, tap: usize, size: usize) -> Option<usize> {
        let i = (o * self.stride[axis] + tap * self.dilation[axis]).checked_sub(self.padding[axis])?;
        (i < size).then_some(i)
    }

    /// The output row or column that input row or column `i` feeds at tap `tap`, if any.
    #[inline]
    fn output_at(&self, axis: usize, i: usize, tap: usize, size: usize) -> Option<usize> {
        let shifted = (i + self.padding[axis]).checked_sub(tap * self.dilation[axis])?;
        let stride = self.stride[axis];
        (shifted % stride == 0 && shifted / stride < size).then_some(shifted / stride)
    }

    fn in_channel(&self, i: usize) -> usize {
        i / (self.in_h * self.in_w)
    }

    fn out_channel(&self, o: usize) -> usize {
        o / self.pixels()
    }

    /// Whether a spike's taps along a kernel row meet consecutive pixels, each with all of the
    /// image's channels (stride 1, dilation 1, one group): then the channels-last runs of
    /// neighbouring taps join into one.
    /// Tap `ky * kw + kx` in the order of [`Geometry::output_runs`], `ky * kw + (kw - 1 - kx)`.
    fn mirrored(&self, tap: usize) -> usize {
        let kw = self.kernel[1];
        tap / kw * kw + (kw - 1 - tap % kw)
    }

    fn joins_runs(&self) -> bool {
        self.stride[1] == 1 && self.dilation[1] == 1 && self.groups == 1
    }

    /// Calls `f(tap, pixel, count)` for the output pixels that input element `i` reaches, as
    /// runs of `count` consecutive output pixels whose taps are consecutive in
    /// [`channels_last_weights`]' mirrored order (`ky * k + (k - 1 - kx)`, `tap` the first
    /// one's): whole kernel rows where [`Geometry::joins_runs`], single taps otherwise.
    #[inline]
    fn output_runs(&self, i: usize, mut f: impl FnMut(usize, usize, usize)) {
        let ([kh, kw], pw) = (self.kernel, self.padding[1]);
        let (iy, ix) = (i / self.in_w % self.in_h, i % self.in_w);
        for ky in 0..kh {
            let Some(oy) = self.output_at(0, iy, ky, self.out_h) else { continue };
            if self.joins_runs() {
                // Output column ix + padding - kx for kx in lo..=hi, in increasing order.
                let hi = (ix + pw).min(kw - 1);
                let lo = (ix + pw + 1).saturating_sub(self.out_w);
                if lo <= hi {
                    f(ky * kw + (kw - 1 - hi), oy * self.out_w + ix + pw - hi, hi - lo + 1);
                }
                continue;
            }
            for kx in 0..kw {
                let Some(ox) = self.output_at(1, ix, kx, self.out_w) else { continue };
                f(ky * kw + (kw - 1 - kx), oy * self.out_w + ox, 1);
            }
        }
    }

    /// Calls `f(tap, pixel, count)` for the input pixels that output element `o` reads, as
    /// runs of `count` consecutive input pixels and taps (`tap` and `pixel` the first's):
    /// whole kernel rows where [`Geometry::joins_runs`], single taps otherwise.
    #[inline]
    fn input_runs(&self, o: usize, mut f: impl FnMut(usize, usize, usize)) {
        let ([kh, kw], pw) = (self.kernel, self.padding[1]);
        let (oy, ox) = (o / self.out_w % self.out_h, o % self.out_w);
        for ky in 0..kh {
            let Some(iy) = self.input_at(0, oy, ky, self.in_h) else { continue };
            if self.joins_runs() {
                // Input column ox + kx - padding for kx in lo..=hi, in increasing order.
                let lo = pw.saturating_sub(ox);
                let Some(last) = (self.in_w + pw).checked_sub(ox + 1) else { continue };
                let hi = last.min(kw - 1);
                if lo <= hi {
                    f(ky * kw + lo, iy * self.in_w + ox + lo - pw, hi - lo + 1);
                }
                continue;
            }
            for kx in 0..kw {
                let Some(ix) = self.input_at(1, ox, kx, self.in_w) else { continue };
                f(ky * kw + kx, iy * self.in_w + ix, 1);
            }
        }
    }

    /// Calls `f(input index, output index, weight index)` for every product of one image.
    fn for_each_product(&self, mut f: impl FnMut(usize, usize, usize)) {
        let ([kh, kw], in_g, out_g) = (self.kernel, self.in_group(), self.out_group());
        for oc in 0..self.out_c {
            let group = oc / out_g;
            for icg in 0..in_g {
                let ic = group * in_g + icg;
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wi = ((oc * in_g + icg) * kh + ky) * kw + kx;
                        for oy in 0..self.out_h {
                            let Some(iy) = self.input_at(0, oy, ky, self.in_h) else { continue };
                            for ox in 0..self.out_w {
                                let Some(ix) = self.input_at(1, ox, kx, self.in_w) else { continue };
                                f((ic * self.in_h + iy) * self.in_w + ix, (oc * self.out_h + oy) * self.out_w + ox, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y += conv(x)` for one image, as defined.
pub fn reference_forward<F: Real>(geo: &Geometry, w: &[F], x: &[F], y: &mut [F]) {
    geo.for_each_product(|i, o, wi| y[o] += x[i] * w[wi]);
}

/// `dx += conv^T(g)` for one image, as defined.
pub fn reference_adjoint<F: Real>(geo: &Geometry, w: &[F], g: &[F], dx: &mut [F]) {
    geo.for_each_product(|i, o, wi| dx[i] += g[o] * w[wi]);
}

/// `dw += d <g, conv(x)> / dw` for one image, as defined.
pub fn reference_weight_grad<F: Real>(geo: &Geometry, x: &[F], g: &[F], dw: &mut [F]) {
    geo.for_each_product(|i, o, wi| dw[wi] += g[o] * x[i]);
}

/// The columns of one image for one group: `cols[(icg * taps + tap) * pixels + pixel]`, the
/// input each output pixel reads at each tap (0 in the padding).
fn im2col<F: Real>(geo: &Geometry, x: &[F], group: usize, cols: &mut [F]) {
    let ([kh, kw], pixels) = (geo.kernel, geo.pixels());
    for icg in 0..geo.in_group() {
        let plane = &x[(group * geo.in_group() + icg) * geo.in_h * geo.in_w..][..geo.in_h * geo.in_w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut cols[((icg * kh + ky) * kw + kx) * pixels..][..pixels];
                for oy in 0..geo.out_h {
                    let out = &mut row[oy * geo.out_w..(oy + 1) * geo.out_w];
                    let Some(iy) = geo.input_at(0, oy, ky, geo.in_h) else {
                        out.fill(F::zero());
                        continue;
                    };
                    let line = &plane[iy * geo.in_w..(iy + 1) * geo.in_w];
                    for (ox, o) in out.iter_mut().enumerate() {
                        *o = geo.input_at(1, ox, kx, geo.in_w).map_or(F::zero(), |ix| line[ix]);
                    }
                }
            }
        }
    }
}

/// Adds columns back into the image they were read from (the adjoint of [`im2col`]).
fn col2im<F: Real>(geo: &Geometry, cols: &[F], group: usize, dx: &mut [F]) {
    let ([kh, kw], pixels) = (geo.kernel, geo.pixels());
    for icg in 0..geo.in_group() {
        let plane = &mut dx[(group * geo.in_group() + icg) * geo.in_h * geo.in_w..][..geo.in_h * geo.in_w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &cols[((icg * kh + ky) * kw + kx) * pixels..][..pixels];
                for oy in 0..geo.out_h {
                    let Some(iy) = geo.input_at(0, oy, ky, geo.in_h) else { continue };
                    let line = &mut plane[iy * geo.in_w..(iy + 1) * geo.in_w];
                    for (ox, c) in row[oy * geo.out_w..(oy + 1) * geo.out_w].iter().enumerate() {
                        if let Some(ix) = geo.input_at(1, ox, kx, geo.in_w) {
                            line[ix] += *c;
                        }
                    }
                }
            }
        }
    }
}

/// `y += conv(x)` over `rows` images; `events` for binary, sparse `x`.
pub fn forward<F: Real>(geo: &Geometry, w: &[F], x: &[F], y: &mut [F], rows: usize, events: bool) {
    let (n_in, n_out) = (geo.in_len(), geo.out_len());
    assert!(x.len() >= rows * n_in && y.len() >= rows * n_out && w.len() >= geo.weights(), "convolution operands have the stated shapes");
    let (patch, pixels, out_g) = (geo.patch(), geo.pixels(), geo.out_group());
    if events {
        forward_events(geo, w, &Rows::Values(x), y, rows);
        return;
    }
    y[..rows * n_out].par_chunks_mut(n_out).zip(x[..rows * n_in].par_chunks(n_in)).for_each(|(y, x)| {
        let mut cols = pool::overwritten::<F>(patch * pixels);
        for group in 0..geo.groups {
            im2col(geo, x, group, &mut cols);
            // SAFETY: W_g is out_g x patch, the columns patch x pixels, Y_g out_g x pixels, all
            // row-major inside their slices; y does not overlap them.
            unsafe {
                gemm_add(
                    out_g,
                    patch,
                    pixels,
                    w.as_ptr().add(group * out_g * patch),
                    patch as isize,
                    1,
                    cols.as_ptr(),
                    pixels as isize,
                    1,
                    y.as_mut_ptr().add(group * out_g * pixels),
                    pixels as isize,
                    1,
                );
            }
        }
        pool::spare([cols]);
    });
}

/// `y += conv(x)` over `rows` images of binary, sparse `x` (values or spike bits), event by
/// event: a spike adds, at each output pixel it reaches, one run of the group's output
/// channels, accumulated channels-last (contiguous, vectorised), then added to `y`.
pub fn forward_events<F: Real>(geo: &Geometry, w: &[F], x: &Rows<F>, y: &mut [F], rows: usize) {
    let (n_in, n_out) = (geo.in_len(), geo.out_len());
    assert!(x.len() >= rows * n_in && y.len() >= rows * n_out && w.len() >= geo.weights(), "convolution operands have the stated shapes");
    let (taps, pixels, out_g) = (geo.taps(), geo.pixels(), geo.out_group());
    let wt = channels_last_weights(geo, w);
    y[..rows * n_out].par_chunks_mut(n_out).enumerate().for_each(|(image, y)| {
        if !any_event(x, image, n_in) {
            return;
        }
        let mut acc = pool::zeroed::<F>(n_out);
        each_event(x, image, n_in, |i, v| {
            let ic = geo.in_channel(i);
            let first = ic / geo.in_group() * out_g;
            geo.output_runs(i, |tap, pixel, count| {
                let run = count * out_g;
                axpy(v, &wt[(ic * taps + tap) * out_g..][..run], &mut acc[pixel * geo.out_c + first..][..run]);
            });
        });
        add_channels_last(&acc, y, geo.out_c, pixels);
        pool::spare([acc]);
    });
    pool::spare([wt]);
}

/// Calls `f(element, value)` for every nonzero element of image `image` (of `len` elements)
/// of `rows`, in order.
#[inline]
fn each_event<F: Real>(rows: &Rows<F>, image: usize, len: usize, mut f: impl FnMut(usize, F)) {
    match rows {
        Rows::Values(x) => {
            let x = &x[image * len..(image + 1) * len];
            for_each_nonzero(x, |i| f(i, x[i]));
        }
        Rows::Bits(bits, range) => {
            let start = range.start + image * len;
            bits.for_each_set(start..start + len, |i| f(i, F::one()));
        }
    }
}

/// Whether image `image` of `rows` has a nonzero element.
fn any_event<F: Real>(rows: &Rows<F>, image: usize, len: usize) -> bool {
    match rows {
        Rows::Values(x) => crate::exec::kernels::bits::any_nonzero(&x[image * len..(image + 1) * len]),
        Rows::Bits(bits, range) => bits.count(range.start + image * len..range.start + (image + 1) * len) > 0,
    }
}

/// `dx += conv^T(g)` over `rows` images; `events` for binary, sparse `g` (a transposed
/// convolution's spikes).
pub fn adjoint<F: Real>(geo: &Geometry, w: &[F], g: &[F], dx: &mut [F], rows: usize, events: bool) {
    let (n_in, n_out) = (geo.in_len(), geo.out_len());
    assert!(dx.len() >= rows * n_in && g.len() >= rows * n_out && w.len() >= geo.weights(), "convolution operands have the stated shapes");
    let (patch, pixels, out_g) = (geo.patch(), geo.pixels(), geo.out_group());
    if events {
        adjoint_events(geo, w, &Rows::Values(g), dx, rows);
        return;
    }
    dx[..rows * n_in].par_chunks_mut(n_in).zip(g[..rows * n_out].par_chunks(n_out)).for_each(|(dx, g)| {
        let mut cols = pool::overwritten::<F>(patch * pixels);
        for group in 0..geo.groups {
            cols.fill(F::zero());
            // SAFETY: W_g^T is patch x out_g (W_g read through transposed strides), G_g out_g x
            // pixels, the columns patch x pixels; the columns are a separate buffer.
            unsafe {
                gemm_add(
                    patch,
                    out_g,
                    pixels,
                    w.as_ptr().add(group * out_g * patch),
                    1,
                    patch as isize,
                    g.as_ptr().add(group * out_g * pixels),
                    pixels as isize,
                    1,
                    cols.as_mut_ptr(),
                    pixels as isize,
                    1,
                );
            }
            col2im(geo, &cols, group, dx);
        }
        pool::spare([cols]);
    });
}

/// `dx += conv^T(g)` over `rows` images of binary, sparse `g` (values or spike bits: a
/// transposed convolution's spikes), event by event: a spike adds, at each input pixel it
/// reaches, the run of the group's input channels, accumulated channels-last, then added to
/// `dx`.
pub fn adjoint_events<F: Real>(geo: &Geometry, w: &[F], g: &Rows<F>, dx: &mut [F], rows: usize) {
    let (n_in, n_out) = (geo.in_len(), geo.out_len());
    assert!(dx.len() >= rows * n_in && g.len() >= rows * n_out && w.len() >= geo.weights(), "convolution operands have the stated shapes");
    let (taps, in_g, out_g) = (geo.taps(), geo.in_group(), geo.out_group());
    let wt = taps_first_weights(geo, w);
    dx[..rows * n_in].par_chunks_mut(n_in).enumerate().for_each(|(image, dx)| {
        if !any_event(g, image, n_out) {
            return;
        }
        let mut acc = pool::zeroed::<F>(n_in);
        each_event(g, image, n_out, |o, v| {
            let oc = geo.out_channel(o);
            let first = oc / out_g * in_g;
            geo.input_runs(o, |tap, pixel, count| {
                let run = count * in_g;
                axpy(v, &wt[(oc * taps + tap) * in_g..][..run], &mut acc[pixel * geo.in_c + first..][..run]);
            });
        });
        add_channels_last(&acc, dx, geo.in_c, geo.in_h * geo.in_w);
        pool::spare([acc]);
    });
    pool::spare([wt]);
}

/// `dx += conv^T(g)` over `rows` images at the input elements set in `at` (bits
/// `start + image * in_len + element`) alone: a gather per element, for an input gradient only
/// read where the source spiked ([`crate::ir::grad::spike_gated`]).
pub fn adjoint_at<F: Real>(geo: &Geometry, w: &[F], g: &[F], dx: &mut [F], rows: usize, at: &Bits, start: usize) {
    let (n_in, n_out) = (geo.in_len(), geo.out_len());
    assert!(dx.len() >= rows * n_in && g.len() >= rows * n_out && w.len() >= geo.weights(), "convolution operands have the stated shapes");
    let (taps, out_g) = (geo.taps(), geo.out_group());
    let wt = channels_last_weights(geo, w);
    dx[..rows * n_in].par_chunks_mut(n_in).zip(g[..rows * n_out].par_chunks(n_out)).enumerate().for_each(|(image, (dx, g))| {
        let bits = start + image * n_in..start + (image + 1) * n_in;
        if at.count(bits.clone()) == 0 {
            return;
        }
        let mut g_t = pool::overwritten::<F>(n_out);
        transpose(g, &mut g_t, geo.out_c, geo.pixels());
        at.for_each_set(bits, |i| {
            let ic = geo.in_channel(i);
            let first = ic / geo.in_group() * out_g;
            let mut sum = F::zero();
            geo.output_runs(i, |tap, pixel, count| {
                let run = count * out_g;
                sum += dot(&wt[(ic * taps + tap) * out_g..][..run], &g_t[pixel * geo.out_c + first..][..run])
            });
            dx[i] += sum;
        });
        pool::spare([g_t]);
    });
    pool::spare([wt]);
}

/// `y += conv(x)` over `rows` images at the output elements set in `at` (bits
/// `start + image * out_len + element`) alone: a transposed convolution's input gradient where
/// its source spiked.
pub fn forward_at<F: Real>(geo: &Geometry, w: &[F], x: &[F], y: &mut [F], rows: usize, at: &Bits, start: usize) {
    let (n_in, n_out) = (geo.in_len(), geo.out_len());
    assert!(x.len() >= rows * n_in && y.len() >= rows * n_out && w.len() >= geo.weights(), "convolution operands have the stated shapes");
    let (taps, in_g, out_g) = (geo.taps(), geo.in_group(), geo.out_group());
    let wt = taps_first_weights(geo, w);
    y[..rows * n_out].par_chunks_mut(n_out).zip(x[..rows * n_in].par_chunks(n_in)).enumerate().for_each(|(image, (y, x))| {
        let bits = start + image * n_out..start + (image + 1) * n_out;
        if at.count(bits.clone()) == 0 {
            return;
        }
        let mut x_t = pool::overwritten::<F>(n_in);
        transpose(x, &mut x_t, geo.in_c, geo.in_h * geo.in_w);
        at.for_each_set(bits, |o| {
            let oc = geo.out_channel(o);
            let first = oc / out_g * in_g;
            let mut sum = F::zero();
            geo.input_runs(o, |tap, pixel, count| {
                let run = count * in_g;
                sum += dot(&wt[(oc * taps + tap) * in_g..][..run], &x_t[pixel * geo.in_c + first..][..run])
            });
            y[o] += sum;
        });
        pool::spare([x_t]);
    });
    pool::spare([wt]);
}

/// Which operand of a weight gradient holds sparse binary spikes, for the event-driven path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spikes {
    /// `x`, the convolution's input (a convolution's presynaptic spikes).
    Input,
    /// `g`'s partner at the output: a transposed convolution's presynaptic spikes, passed as
    /// `g`.
    Output,
}

/// `dw += d <g, conv(x)> / dw` over `rows` images, event-driven over the operand `events`
/// names.
pub fn weight_grad<F: Real>(geo: &Geometry, x: &[F], g: &[F], dw: &mut [F], rows: usize, events: Option<Spikes>) {
    let (n_in, n_out) = (geo.in_len(), geo.out_len());
    assert!(x.len() >= rows * n_in && g.len() >= rows * n_out && dw.len() >= geo.weights(), "convolution operands have the stated shapes");
    match events {
        Some(Spikes::Input) => weight_grad_events(geo, &Rows::Values(x), Spikes::Input, g, dw, rows),
        Some(Spikes::Output) => weight_grad_events(geo, &Rows::Values(g), Spikes::Output, x, dw, rows),
        None => weight_grad_blocks(geo, dw, rows, None, |image, partial, cols| {
            weight_grad_dense(geo, &x[image * n_in..(image + 1) * n_in], &g[image * n_out..(image + 1) * n_out], partial, cols)
        }),
    }
}

/// `dw += d <g, conv(x)> / dw` over `rows` images, accumulated at the spikes of the binary,
/// sparse operand `spikes` (values or spike bits) on `side`; `other` is the other operand (`g`
/// for spikes at the input, `x` for spikes at the output side).
pub fn weight_grad_events<F: Real>(geo: &Geometry, spikes: &Rows<F>, side: Spikes, other: &[F], dw: &mut [F], rows: usize) {
    let (n_in, n_out) = (geo.in_len(), geo.out_len());
    let (n_spikes, n_other) = match side {
        Spikes::Input => (n_in, n_out),
        Spikes::Output => (n_out, n_in),
    };
    assert!(
        spikes.len() >= rows * n_spikes && other.len() >= rows * n_other && dw.len() >= geo.weights(),
        "convolution operands have the stated shapes"
    );
    weight_grad_blocks(geo, dw, rows, Some(side), |image, partial, scratch| {
        if !any_event(spikes, image, n_spikes) {
            return;
        }
        let other = &other[image * n_other..(image + 1) * n_other];
        match side {
            Spikes::Input => weight_grad_input_events(geo, spikes, image, other, partial, scratch),
            Spikes::Output => weight_grad_output_events(geo, other, spikes, image, partial, scratch),
        }
    });
}

/// Both gradients of a projection whose presynaptic spikes are the binary, sparse bits
/// `start + image * len + element` of `spikes` on `side`, and whose spikes' adjoint is read at
/// spikes alone: `dw` as [`weight_grad_events`] gives it, and `d_spikes` at the set elements
/// as [`adjoint_at`] (spikes at the input) or [`forward_at`] (at the output side) give it, bit
/// for bit. One pass does both: each image's `other` is transposed once, and each spike's runs
/// of it are read once, for the weight gradient's sum and the gather's dot product.
#[allow(clippy::too_many_arguments)]
pub fn grads_at_spikes<F: Real>(
    geo: &Geometry,
    w: &[F],
    spikes: &Bits,
    start: usize,
    side: Spikes,
    other: &[F],
    d_spikes: &mut [F],
    dw: &mut [F],
    rows: usize,
) {
    let (n_spikes, n_other) = match side {
        Spikes::Input => (geo.in_len(), geo.out_len()),
        Spikes::Output => (geo.out_len(), geo.in_len()),
    };
    assert!(
        d_spikes.len() >= rows * n_spikes && other.len() >= rows * n_other && dw.len() >= geo.weights() && w.len() >= geo.weights(),
        "convolution operands have the stated shapes"
    );
    let (taps, in_g, out_g) = (geo.taps(), geo.in_group(), geo.out_group());
    // The other side's channels, and the run of them a spike reads per tap (its group's).
    let (other_c, run_g) = match side {
        Spikes::Input => (geo.out_c, out_g),
        Spikes::Output => (geo.in_c, in_g),
    };
    // The weights in the layout the partial sums take: a spike's runs are contiguous in both.
    let wt = match side {
        Spikes::Input => channels_last_weights(geo, w),
        Spikes::Output => taps_first_weights(geo, w),
    };
    let partials: Vec<Vec<F>> = d_spikes[..rows * n_spikes]
        .par_chunks_mut(IMAGES_PER_BLOCK * n_spikes)
        .enumerate()
        .map(|(block, d_block)| {
            let mut partial = pool::zeroed::<F>(geo.weights());
            let mut scratch = pool::overwritten::<F>(n_other);
            for (k, d) in d_block.chunks_mut(n_spikes).enumerate() {
                let image = block * IMAGES_PER_BLOCK + k;
                let bits = start + image * n_spikes..start + (image + 1) * n_spikes;
                if spikes.count(bits.clone()) == 0 {
                    continue;
                }
                transpose(&other[image * n_other..(image + 1) * n_other], &mut scratch, other_c, n_other / other_c);
                spikes.for_each_set(bits, |e| {
                    // The spike's channel, and the first channel of its group on the other side.
                    let (c, first) = match side {
                        Spikes::Input => (geo.in_channel(e), geo.in_channel(e) / in_g * out_g),
                        Spikes::Output => (geo.out_channel(e), geo.out_channel(e) / out_g * in_g),
                    };
                    let mut sum = F::zero();
                    let mut add = |tap: usize, pixel: usize, count: usize| {
                        let (at, run) = ((c * taps + tap) * run_g, count * run_g);
                        let x = &scratch[pixel * other_c + first..][..run];
                        axpy(F::one(), x, &mut partial[at..][..run]);
                        sum += dot(&wt[at..][..run], x);
                    };
                    match side {
                        Spikes::Input => geo.output_runs(e, &mut add),
                        Spikes::Output => geo.input_runs(e, &mut add),
                    }
                    d[e] += sum;
                });
            }
            pool::spare([scratch]);
            in_own_layout(geo, Some(side), partial)
        })
        .collect();
    add_partials(dw, partials);
    pool::spare([wt]);
}

/// Sums a weight gradient over fixed blocks of images in order (results do not depend on the
/// threads), each block in the layout its path accumulates in (`events`: see
/// [`weight_grad_input_events`] and [`weight_grad_output_events`]), put back in the weights'
/// own layout. `per_image(image, partial, scratch)` adds one image.
fn weight_grad_blocks<F: Real>(
    geo: &Geometry,
    dw: &mut [F],
    rows: usize,
    events: Option<Spikes>,
    per_image: impl Fn(usize, &mut [F], &mut [F]) + Sync,
) {
    let blocks = rows.div_ceil(IMAGES_PER_BLOCK);
    let partials: Vec<Vec<F>> = (0..blocks)
        .into_par_iter()
        .map(|block| {
            let mut partial = pool::zeroed::<F>(geo.weights());
            let images = block * IMAGES_PER_BLOCK..((block + 1) * IMAGES_PER_BLOCK).min(rows);
            let scratch_len = match events {
                None => geo.patch() * geo.pixels(),
                Some(Spikes::Input) => geo.out_len(),
                Some(Spikes::Output) => geo.in_len(),
            };
            let mut scratch = pool::overwritten::<F>(scratch_len);
            for image in images {
                per_image(image, &mut partial, &mut scratch);
            }
            pool::spare([scratch]);
            in_own_layout(geo, events, partial)
        })
        .collect();
    add_partials(dw, partials);
}

/// A block's partial weight gradient, summed in the layout of the path `events` names, in the
/// weights' own layout (a converted partial goes back to the pool).
fn in_own_layout<F: Real>(geo: &Geometry, events: Option<Spikes>, partial: Vec<F>) -> Vec<F> {
    let own = match events {
        None => return partial,
        Some(Spikes::Input) => from_channels_last_weights(geo, &partial),
        Some(Spikes::Output) => from_taps_first_weights(geo, &partial),
    };
    pool::spare([partial]);
    own
}

/// Adds the blocks' partial sums to `dw` in block order (so that results do not depend on the
/// threads) and gives them back to the pool.
fn add_partials<F: Real>(dw: &mut [F], partials: Vec<Vec<F>>) {
    for partial in &partials {
        for (d, p) in dw.iter_mut().zip(partial) {
            *d += *p;
        }
    }
    pool::spare(partials);
}

fn weight_grad_dense<F: Real>(geo: &Geometry, x: &[F], g: &[F], dw: &mut [F], cols: &mut [F]) {
    let (patch, pixels, out_g) = (geo.patch(), geo.pixels(), geo.out_group());
    for group in 0..geo.groups {
        im2col(geo, x, group, cols);
        // SAFETY: G_g is out_g x pixels, the columns read transposed pixels x patch, dW_g
        // out_g x patch; dw is a separate buffer.
        unsafe {
            gemm_add(
                out_g,
                pixels,
                patch,
                g.as_ptr().add(group * out_g * pixels),
                pixels as isize,
                1,
                cols.as_ptr(),
                1,
                pixels as isize,
                dw.as_mut_ptr().add(group * out_g * patch),
                patch as isize,
                1,
            );
        }
    }
}

/// Image `image`'s weight gradient at the input's spikes `x`, into `dw` in the layout of
/// [`channels_last_weights`], with `g_t` scratch for `g` (the image's) channels-last.
fn weight_grad_input_events<F: Real>(geo: &Geometry, x: &Rows<F>, image: usize, g: &[F], dw: &mut [F], g_t: &mut [F]) {
    let (taps, out_g) = (geo.taps(), geo.out_group());
    transpose(g, g_t, geo.out_c, geo.pixels());
    each_event(x, image, geo.in_len(), |i, v| {
        let ic = geo.in_channel(i);
        let first = ic / geo.in_group() * out_g;
        geo.output_runs(i, |tap, pixel, count| {
            let run = count * out_g;
            axpy(v, &g_t[pixel * geo.out_c + first..][..run], &mut dw[(ic * taps + tap) * out_g..][..run]);
        });
    });
}

/// Image `image`'s weight gradient at the output side's spikes `g` (a transposed
/// convolution's input), into `dw` in the layout of [`taps_first_weights`], with `x_t` scratch
/// for `x` (the image's) channels-last.
fn weight_grad_output_events<F: Real>(geo: &Geometry, x: &[F], g: &Rows<F>, image: usize, dw: &mut [F], x_t: &mut [F]) {
    let (taps, in_g, out_g) = (geo.taps(), geo.in_group(), geo.out_group());
    transpose(x, x_t, geo.in_c, geo.in_h * geo.in_w);
    each_event(g, image, geo.out_len(), |o, v| {
        let oc = geo.out_channel(o);
        let first = oc / out_g * in_g;
        geo.input_runs(o, |tap, pixel, count| {
            let run = count * in_g;
            axpy(v, &x_t[pixel * geo.in_c + first..][..run], &mut dw[(oc * taps + tap) * in_g..][..run]);
        });
    });
}

/// The transpose of a `channels x pixels` image into `pixels x channels`.
fn transpose<F: Real>(from: &[F], to: &mut [F], channels: usize, pixels: usize) {
    for c in 0..channels {
        for (p, v) in from[c * pixels..(c + 1) * pixels].iter().enumerate() {
            to[p * channels + c] = *v;
        }
    }
}

/// Adds a `pixels x channels` accumulator into a `channels x pixels` image.
fn add_channels_last<F: Real>(acc: &[F], image: &mut [F], channels: usize, pixels: usize) {
    for c in 0..channels {
        for (p, y) in image[c * pixels..(c + 1) * pixels].iter_mut().enumerate() {
            *y += acc[p * channels + c];
        }
    }
}

/// The weights as `[in_c][ky][k - 1 - kx][out_c / groups]` (a pooled buffer): a spike of
/// input channel `ic` at a tap reads one contiguous run over its group's output channels, and
/// with the taps of a kernel row mirrored, the runs of a row's taps follow each other in the
/// order of the output pixels they reach ([`Geometry::output_runs`]).
fn channels_last_weights<F: Real>(geo: &Geometry, w: &[F]) -> Vec<F> {
    let (taps, in_g, out_g) = (geo.taps(), geo.in_group(), geo.out_group());
    let mut wt = pool::overwritten::<F>(geo.weights());
    for oc in 0..geo.out_c {
        let (group, ocg) = (oc / out_g, oc % out_g);
        for icg in 0..in_g {
            for tap in 0..taps {
                wt[((group * in_g + icg) * taps + geo.mirrored(tap)) * out_g + ocg] = w[(oc * in_g + icg) * taps + tap];
            }
        }
    }
    wt
}

/// The inverse of [`channels_last_weights`].
fn from_channels_last_weights<F: Real>(geo: &Geometry, wt: &[F]) -> Vec<F> {
    let (taps, in_g, out_g) = (geo.taps(), geo.in_group(), geo.out_group());
    let mut w = pool::overwritten::<F>(geo.weights());
    for oc in 0..geo.out_c {
        let (group, ocg) = (oc / out_g, oc % out_g);
        for icg in 0..in_g {
            for tap in 0..taps {
                w[(oc * in_g + icg) * taps + tap] = wt[((group * in_g + icg) * taps + geo.mirrored(tap)) * out_g + ocg];
            }
        }
    }
    w
}

/// The weights as `[out_c][tap][in_c / groups]` (a pooled buffer): a spike of output channel
/// `oc` at tap `tap` reads one contiguous run over its group's input channels.
fn taps_first_weights<F: Real>(geo: &Geometry, w: &[F]) -> Vec<F> {
    let (taps, in_g) = (geo.taps(), geo.in_group());
    let mut wt = pool::overwritten::<F>(geo.weights());
    for oc in 0..geo.out_c {
        for icg in 0..in_g {
            for tap in 0..taps {
                wt[(oc * taps + tap) * in_g + icg] = w[(oc * in_g + icg) * taps + tap];
            }
        }
    }
    wt
}

/// The inverse of [`taps_first_weights`].
fn from_taps_first_weights<F: Real>(geo: &Geometry, wt: &[F]) -> Vec<F> {
    let (taps, in_g) = (geo.taps(), geo.in_group());
    let mut w = pool::overwritten::<F>(geo.weights());
    for oc in 0..geo.out_c {
        for icg in 0..in_g {
            for tap in 0..taps {
                w[(oc * in_g + icg) * taps + tap] = wt[(oc * taps + tap) * in_g + icg];
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1), or spikes at about `density`.
    fn values(len: usize, seed: u64, density: Option<f64>) -> Vec<f64> {
        (0..len)
            .map(|i| {
                let u = crate::data::uniform(seed, 77, i as u64, 0);
                match density {
                    Some(d) => f64::from(u8::from(u < d)),
                    None => 2.0 * u - 1.0,
                }
            })
            .collect()
    }

    fn geometries() -> Vec<Geometry> {
        // Square settings: the same along both axes.
        let g = |in_c, in_h, in_w, out_c, kernel: usize, stride: usize, padding: usize, dilation: usize, groups| {
            rect(in_c, [in_h, in_w], out_c, [kernel; 2], [stride; 2], [padding; 2], [dilation; 2], groups)
        };
        vec![
            g(1, 7, 6, 3, 3, 1, 0, 1, 1),
            g(2, 9, 8, 4, 3, 2, 1, 1, 1),
            g(4, 8, 7, 6, 2, 1, 2, 2, 2),
            g(3, 5, 5, 3, 3, 2, 1, 1, 3),
            g(2, 6, 5, 5, 5, 1, 2, 1, 1),
            // Settings that differ between the axes: joined runs along rows of 4 taps over
            // 3 rows, and strided, dilated, padded columns with stride-1 rows.
            rect(2, [7, 9], 3, [3, 4], [2, 1], [1, 2], [1, 1], 1),
            rect(2, [6, 9], 4, [2, 3], [1, 2], [0, 1], [2, 1], 2),
            // A 1-d convolution: one row.
            rect(3, [1, 11], 2, [1, 4], [1, 2], [0, 1], [1, 2], 1),
            rect(2, [1, 10], 3, [1, 5], [1, 1], [0, 2], [1, 1], 1),
        ]
    }

    #[allow(clippy::too_many_arguments)]
    fn rect(in_c: usize, in_hw: Hw, out_c: usize, kernel: Hw, stride: Hw, padding: Hw, dilation: Hw, groups: usize) -> Geometry {
        let out = |a: usize| (in_hw[a] + 2 * padding[a] - (dilation[a] * (kernel[a] - 1) + 1)) / stride[a] + 1;
        Geometry { in_c, in_h: in_hw[0], in_w: in_hw[1], out_c, out_h: out(0), out_w: out(1), kernel, stride, padding, dilation, groups }
    }

    fn assert_close(what: &str, a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-12 * (1.0 + x.abs()), "{what}: element {i}: {x} vs {y}");
        }
    }

    /// Dense and event-driven products against the definitions, over odd shapes, strides,
    /// padding, dilation and groups, 19 images (more than a weight-gradient block, with a
    /// tail).
    #[test]
    fn every_path_matches_the_definition() {
        let rows = 19;
        for (n, geo) in geometries().iter().enumerate() {
            let seed = n as u64;
            let w = values(geo.weights(), seed, None);
            let (x, g) = (values(rows * geo.in_len(), seed + 10, None), values(rows * geo.out_len(), seed + 20, None));
            let (xs, gs) = (values(rows * geo.in_len(), seed + 30, Some(0.2)), values(rows * geo.out_len(), seed + 40, Some(0.2)));
            let per_image = |f: &dyn Fn(usize, &mut [f64]), len: usize| {
                let mut out = vec![0.0; rows * len];
                for (r, chunk) in out.chunks_exact_mut(len).enumerate() {
                    f(r, chunk);
                }
                out
            };
            let (ni, no) = (geo.in_len(), geo.out_len());
            for (xin, spiking) in [(&x, false), (&xs, true)] {
                let want = per_image(&|r, y| reference_forward(geo, &w, &xin[r * ni..(r + 1) * ni], y), no);
                let mut got = vec![0.0; rows * no];
                forward(geo, &w, xin, &mut got, rows, spiking);
                assert_close(&format!("{geo:?} forward, events {spiking}"), &want, &got);
            }
            for (gin, spiking) in [(&g, false), (&gs, true)] {
                let want = per_image(&|r, dx| reference_adjoint(geo, &w, &gin[r * no..(r + 1) * no], dx), ni);
                let mut got = vec![0.0; rows * ni];
                adjoint(geo, &w, gin, &mut got, rows, spiking);
                assert_close(&format!("{geo:?} adjoint, events {spiking}"), &want, &got);
            }
            for (xin, gin, events) in [(&x, &g, None), (&xs, &g, Some(Spikes::Input)), (&x, &gs, Some(Spikes::Output))] {
                let mut want = vec![0.0; geo.weights()];
                for r in 0..rows {
                    reference_weight_grad(geo, &xin[r * ni..(r + 1) * ni], &gin[r * no..(r + 1) * no], &mut want);
                }
                let mut got = vec![0.0; geo.weights()];
                weight_grad(geo, xin, gin, &mut got, rows, events);
                assert_close(&format!("{geo:?} weight gradient, events {events:?}"), &want, &got);
            }
        }
    }

    /// The gathers at set elements (spike-gated input gradients) equal the definitions there
    /// and leave every other element alone, for every geometry (joined runs included).
    #[test]
    fn gathers_at_set_elements_match_the_definition() {
        let rows = 5;
        for (n, geo) in geometries().iter().enumerate() {
            let w = values(geo.weights(), n as u64, None);
            let (ni, no) = (geo.in_len(), geo.out_len());
            let (x, g) = (values(rows * ni, n as u64 + 70, None), values(rows * no, n as u64 + 80, None));
            let mask = |len: usize, seed: u64| -> (Bits, Vec<f64>) {
                let chosen: Vec<f64> = values(len, seed, Some(0.3)).iter().map(|v| f64::from(u8::from(*v != 0.0))).collect();
                let mut bits = Bits::zeros(len + 11);
                bits.store(11, &chosen);
                (bits, chosen)
            };
            let (out_bits, out_chosen) = mask(rows * no, n as u64 + 90);
            let mut got = vec![0.0; rows * no];
            forward_at(geo, &w, &x, &mut got, rows, &out_bits, 11);
            for r in 0..rows {
                let mut full = vec![0.0; no];
                reference_forward(geo, &w, &x[r * ni..(r + 1) * ni], &mut full);
                let want: Vec<f64> = full.iter().zip(&out_chosen[r * no..(r + 1) * no]).map(|(v, c)| v * c).collect();
                assert_close(&format!("{geo:?} forward_at, image {r}"), &want, &got[r * no..(r + 1) * no]);
            }
            let (in_bits, in_chosen) = mask(rows * ni, n as u64 + 100);
            let mut got = vec![0.0; rows * ni];
            adjoint_at(geo, &w, &g, &mut got, rows, &in_bits, 11);
            for r in 0..rows {
                let mut full = vec![0.0; ni];
                reference_adjoint(geo, &w, &g[r * no..(r + 1) * no], &mut full);
                let want: Vec<f64> = full.iter().zip(&in_chosen[r * ni..(r + 1) * ni]).map(|(v, c)| v * c).collect();
                assert_close(&format!("{geo:?} adjoint_at, image {r}"), &want, &got[r * ni..(r + 1) * ni]);
            }
        }
    }

    /// The fused pass gives what the gather and the event-driven weight gradient give apart,
    /// bit for bit, for spikes on either side, over more images than a block.
    #[test]
    fn both_gradients_at_spikes_in_one_pass() {
        let rows = 19;
        for (n, geo) in geometries().iter().enumerate() {
            let w = values(geo.weights(), n as u64, None);
            let (ni, no) = (geo.in_len(), geo.out_len());
            for side in [Spikes::Input, Spikes::Output] {
                let (n_spikes, n_other) = if side == Spikes::Input { (ni, no) } else { (no, ni) };
                let spikes = values(rows * n_spikes, n as u64 + 110, Some(0.2));
                let other = values(rows * n_other, n as u64 + 120, None);
                let mut bits = Bits::zeros(rows * n_spikes + 13);
                bits.store(13, &spikes);
                let start_dx = values(rows * n_spikes, n as u64 + 130, None);
                let (mut want_dx, mut want_dw) = (start_dx.clone(), vec![0.5; geo.weights()]);
                match side {
                    Spikes::Input => adjoint_at(geo, &w, &other, &mut want_dx, rows, &bits, 13),
                    Spikes::Output => forward_at(geo, &w, &other, &mut want_dx, rows, &bits, 13),
                }
                weight_grad_events(geo, &Rows::Bits(&bits, 13..13 + rows * n_spikes), side, &other, &mut want_dw, rows);
                let (mut got_dx, mut got_dw) = (start_dx.clone(), vec![0.5; geo.weights()]);
                grads_at_spikes(geo, &w, &bits, 13, side, &other, &mut got_dx, &mut got_dw, rows);
                assert_eq!(want_dx, got_dx, "{geo:?} spike gradient at {side:?}");
                assert_eq!(want_dw, got_dw, "{geo:?} weight gradient at {side:?}");
                assert!(got_dx != start_dx && got_dw.iter().any(|v| *v != 0.5), "{geo:?}: something was added");
            }
        }
    }

    /// The event paths read spike bits (how a trace keeps spikes) exactly as they read the
    /// same spikes as values, in the middle of a longer bit set.
    #[test]
    fn spike_bits_and_values_give_the_same_sums() {
        let rows = 5;
        for (n, geo) in geometries().iter().enumerate() {
            let w = values(geo.weights(), n as u64, None);
            let (ni, no) = (geo.in_len(), geo.out_len());
            let (xs, gs) = (values(rows * ni, n as u64 + 30, Some(0.2)), values(rows * no, n as u64 + 40, Some(0.2)));
            let (xb, gb): (Vec<f64>, Vec<f64>) =
                (xs.iter().map(|v| f64::from(u8::from(*v != 0.0))).collect(), gs.iter().map(|v| f64::from(u8::from(*v != 0.0))).collect());
            let (g, x) = (values(rows * no, n as u64 + 50, None), values(rows * ni, n as u64 + 60, None));
            let bits_of = |v: &[f64]| {
                let mut bits = Bits::zeros(v.len() + 77);
                bits.store(7, v);
                bits
            };
            let (x_bits, g_bits) = (bits_of(&xb), bits_of(&gb));
            let x_rows = Rows::Bits(&x_bits, 7..7 + rows * ni);
            let g_rows = Rows::Bits(&g_bits, 7..7 + rows * no);

            let (mut want, mut got) = (vec![0.0; rows * no], vec![0.0; rows * no]);
            forward_events(geo, &w, &Rows::Values(&xb), &mut want, rows);
            forward_events(geo, &w, &x_rows, &mut got, rows);
            assert_eq!(want, got, "{geo:?} forward");
            let (mut want, mut got) = (vec![0.0; rows * ni], vec![0.0; rows * ni]);
            adjoint_events(geo, &w, &Rows::Values(&gb), &mut want, rows);
            adjoint_events(geo, &w, &g_rows, &mut got, rows);
            assert_eq!(want, got, "{geo:?} adjoint");
            for (side, spikes, bits, other) in [(Spikes::Input, &xb, &x_rows, &g), (Spikes::Output, &gb, &g_rows, &x)] {
                let (mut want, mut got) = (vec![0.0; geo.weights()], vec![0.0; geo.weights()]);
                weight_grad_events(geo, &Rows::Values(spikes), side, other, &mut want, rows);
                weight_grad_events(geo, bits, side, other, &mut got, rows);
                assert_eq!(want, got, "{geo:?} weight gradient at {side:?}");
            }
        }
    }

    /// The definitions are each other's adjoints: <conv(x), g> = <x, conv^T(g)> = <w, dW>.
    #[test]
    fn the_definitions_are_adjoint() {
        for (n, geo) in geometries().iter().enumerate() {
            let w = values(geo.weights(), n as u64, None);
            let (x, g) = (values(geo.in_len(), 5, None), values(geo.out_len(), 6, None));
            let mut y = vec![0.0; geo.out_len()];
            reference_forward(geo, &w, &x, &mut y);
            let mut dx = vec![0.0; geo.in_len()];
            reference_adjoint(geo, &w, &g, &mut dx);
            let mut dw = vec![0.0; geo.weights()];
            reference_weight_grad(geo, &x, &g, &mut dw);
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
            let (yg, xdx, wdw) = (dot(&y, &g), dot(&x, &dx), dot(&w, &dw));
            assert!((yg - xdx).abs() < 1e-9 && (yg - wdw).abs() < 1e-9, "{geo:?}: {yg} {xdx} {wdw}");
            assert!(yg.abs() > 1e-3, "not trivially zero");
        }
    }

    /// A known case written by hand: a 3x3 image, a 2x2 kernel of ones, stride 1: each output
    /// sums a 2x2 window; with dilation 2 on a 3x3 image the only output sums the corners.
    #[test]
    fn hand_computed_windows() {
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        let geo = rect(1, [3, 3], 1, [2, 2], [1, 1], [0, 0], [1, 1], 1);
        let mut y = vec![0.0; 4];
        reference_forward(&geo, &[1.0; 4], &x, &mut y);
        assert_eq!(y, vec![12.0, 16.0, 24.0, 28.0]);
        let dilated = Geometry { out_h: 1, out_w: 1, dilation: [2, 2], ..geo };
        let mut y = vec![0.0; 1];
        reference_forward(&dilated, &[1.0; 4], &x, &mut y);
        assert_eq!(y, vec![1.0 + 3.0 + 7.0 + 9.0]);
        // A 1x3 kernel [1, 2, 3] at stride [1, 2] with dilation 1: each output row sums
        // x[r][c] + 2 x[r][c + 1] + 3 x[r][c + 2] for c = 0 only (the 3x3 image holds one window
        // per row).
        let row = rect(1, [3, 3], 1, [1, 3], [1, 2], [0, 0], [1, 1], 1);
        let mut y = vec![0.0; 3];
        reference_forward(&row, &[1.0, 2.0, 3.0], &x, &mut y);
        assert_eq!(y, vec![14.0, 32.0, 50.0]);
    }
}
