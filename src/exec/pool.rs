//! Per-thread pools of spare buffers. A training batch allocates tens of megabytes of
//! traces, port rows and adjoints; taking them from a pool that the previous shard on this
//! thread filled saves the allocation and the page faults of touching fresh memory.

use crate::exec::real::Real;

/// Spare buffers kept per thread and type; more are dropped.
const KEEP: usize = 16;

/// One of this thread's spare allocations that holds at least `len` elements.
fn take_spare<F: Real>(len: usize) -> Option<Vec<F>> {
    F::pool().with(|pool| {
        let mut pool = pool.borrow_mut();
        let best = pool.iter().position(|b| b.capacity() >= len)?;
        Some(pool.swap_remove(best))
    })
}

/// A zeroed buffer of `len` elements, reusing one of this thread's spare allocations.
pub fn zeroed<F: Real>(len: usize) -> Vec<F> {
    let mut buffer = take_spare(len).unwrap_or_default();
    buffer.clear();
    buffer.resize(len, F::zero());
    buffer
}

/// A buffer of `len` elements for a caller that overwrites every element: a spare allocation
/// keeps whatever it held.
pub fn overwritten<F: Real>(len: usize) -> Vec<F> {
    let mut buffer = take_spare(len).unwrap_or_default();
    buffer.resize(len, F::zero());
    buffer
}

/// Returns buffers from [`zeroed`] and [`overwritten`] to this thread's pool.
pub fn spare<F: Real>(buffers: impl IntoIterator<Item = Vec<F>>) {
    F::pool().with(|pool| {
        let mut pool = pool.borrow_mut();
        for buffer in buffers {
            if pool.len() < KEEP {
                pool.push(buffer);
            }
        }
    });
}
