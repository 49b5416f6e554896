//! Event-driven accumulation: for binary presynaptic values below a measured density, adding
//! one weight row per spike (and, backwards, one gradient row per spike) beats a GEMM. The
//! crossovers come from `cargo bench --bench events` (docs/results.md).

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::exec::kernels::bits::{Bits, for_each_nonzero};
use crate::exec::kernels::connectivity::shared;
use crate::exec::kernels::simd::add;
use crate::exec::pool;
use crate::exec::real::Real;

/// How many products (forward or weight gradient) took the event-driven path since the
/// process started: tests read it to know that the path actually ran.
static EVENT_PASSES: AtomicU64 = AtomicU64::new(0);

/// The number of event-driven passes so far (see `EVENT_PASSES`).
pub fn event_passes() -> u64 {
    EVENT_PASSES.load(Ordering::Relaxed)
}

/// Below this fraction of active inputs, adding one weight row per spike beats a GEMM into
/// `n_post` outputs, in the precision of `F`. Measured with `cargo bench --bench events`
/// (docs/results.md): walking set bits of stored spikes is much cheaper than scanning encoder
/// values for nonzeros, and the f32 GEMM is fast enough that scanning values into a narrow
/// layer never pays.
pub fn event_crossover<F: Real>(n_post: usize, bits: bool) -> f64 {
    match (F::BYTES == 4, n_post >= 64, bits) {
        (true, false, false) => 0.0,
        (true, false, true) => 0.06,
        (true, true, false) => 0.30,
        (true, true, true) => 0.33,
        (false, false, false) => 0.15,
        (false, false, true) => 0.28,
        (false, true, false) => 0.30,
        (false, true, true) => 0.40,
    }
}

/// The presynaptic rows of a projection: encoder values, or a range of stored spike bits.
#[derive(Clone)]
pub enum Rows<'a, F> {
    Values(&'a [F]),
    Bits(&'a Bits, Range<usize>),
}

impl<F: Real> Rows<'_, F> {
    pub fn len(&self) -> usize {
        match self {
            Rows::Values(x) => x.len(),
            Rows::Bits(_, range) => range.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nonzero entries.
    pub fn active(&self) -> usize {
        match self {
            Rows::Values(x) => {
                let mut count = 0;
                for_each_nonzero(x, |_| count += 1);
                count
            }
            Rows::Bits(bits, range) => bits.count(range.clone()),
        }
    }

    /// The rows as values; spike bits are expanded into a pooled buffer (hand it back with
    /// [`give_back`]).
    pub fn values(&self) -> Cow<'_, [F]> {
        match self {
            Rows::Values(x) => Cow::Borrowed(x),
            Rows::Bits(bits, range) => {
                let mut buffer = pool::overwritten(range.len());
                bits.expand_into(range.start, &mut buffer);
                Cow::Owned(buffer)
            }
        }
    }

    /// Calls `f(row, i)` for every nonzero entry, with `n_pre` entries per row.
    fn for_each_event(&self, n_pre: usize, mut f: impl FnMut(usize, usize)) {
        match self {
            Rows::Values(x) => for_each_nonzero(x, |k| f(k / n_pre, k % n_pre)),
            Rows::Bits(bits, range) => bits.for_each_set(range.clone(), |k| f(k / n_pre, k % n_pre)),
        }
    }

    /// Whether these 0/1 rows are sparse enough for event-driven accumulation into `n_post`
    /// outputs.
    pub fn sparse_for(&self, n_post: usize) -> bool {
        (self.active() as f64) < event_crossover::<F>(n_post, matches!(self, Rows::Bits(..))) * self.len() as f64
    }
}

/// Returns a buffer that [`Rows::values`] expanded to the pool.
pub fn give_back<F: Real>(values: Cow<'_, [F]>) {
    if let Cow::Owned(buffer) = values {
        pool::spare([buffer]);
    }
}

/// Event-driven `y += x W` over 0/1 rows: one weight row added per spike.
pub fn accumulate<F: Real>(x: Rows<F>, w: &[F], y: &mut [F], n_pre: usize, n_post: usize) {
    EVENT_PASSES.fetch_add(1, Ordering::Relaxed);
    x.for_each_event(n_pre, |r, i| add(&w[i * n_post..(i + 1) * n_post], &mut y[r * n_post..(r + 1) * n_post]));
}

/// Event-driven `y += x W` over 0/1 rows for the connectivities with a weight per pair that
/// are not dense: one-to-one (`y[i] += w[i]` per spike of `i`) and all-to-all but self (weight
/// row `i` but its diagonal). The same sums in the same order as their dense loops, without
/// expanding the spikes.
pub fn accumulate_sparse_connectivity<F: Real>(x: Rows<F>, w: &[F], y: &mut [F], n_pre: usize, n_post: usize, one_to_one: bool) {
    x.for_each_event(n_pre, |r, i| {
        let y = &mut y[r * n_post..(r + 1) * n_post];
        if one_to_one {
            if i < n_post {
                y[i] += w[shared(w, i)];
            }
        } else if w.len() == 1 {
            // One weight for every pair: the same sums, without a row of copies.
            let value = w[0];
            for (j, a) in y.iter_mut().enumerate() {
                if j != i {
                    *a += value;
                }
            }
        } else {
            for (j, (a, b)) in y.iter_mut().zip(&w[i * n_post..(i + 1) * n_post]).enumerate() {
                if j != i {
                    *a += *b;
                }
            }
        }
    });
}

/// Event-driven `dW += x^T g` over 0/1 rows: one gradient row added per spike.
pub fn accumulate_grads<F: Real>(x: Rows<F>, g: &[F], dw: &mut [F], n_pre: usize, n_post: usize) {
    EVENT_PASSES.fetch_add(1, Ordering::Relaxed);
    x.for_each_event(n_pre, |r, i| add(&g[r * n_post..(r + 1) * n_post], &mut dw[i * n_post..(i + 1) * n_post]));
}
