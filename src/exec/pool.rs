//! Per-thread pools of spare buffers. A training batch allocates tens of megabytes of
//! traces, port rows and adjoints; taking them from a pool that the previous shard on this
//! thread filled saves the allocation and the page faults of touching fresh memory.

use crate::exec::real::Real;

/// Spare buffers kept per thread and type; more are dropped.
const KEEP: usize = 64;

/// The smallest of this thread's spare allocations that holds at least `len` elements (so
/// that a small request does not take the buffer a large one will need next).
fn take_spare<F: Real>(len: usize) -> Option<Vec<F>> {
    F::pool().with(|pool| {
        let mut pool = pool.borrow_mut();
        // Not more than four times what is asked for: a large buffer handed to a small request
        // may end up where it is not given back.
        let fits = |capacity: usize| capacity >= len && capacity <= len.max(1 << 12).saturating_mul(4);
        let best = (0..pool.len()).filter(|i| fits(pool[*i].capacity())).min_by_key(|i| pool[*i].capacity())?;
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
                continue;
            }
            // Full: keep the larger allocations, which cost the most to fault in again.
            let smallest = (0..pool.len()).min_by_key(|i| pool[*i].capacity()).expect("a full pool has buffers");
            if pool[smallest].capacity() < buffer.capacity() {
                pool[smallest] = buffer;
            }
        }
    });
}
