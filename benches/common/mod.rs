//! Timing shared by the benchmarks.

use std::time::Instant;

/// The fastest of `reps` runs of `f`, in seconds.
pub fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}
