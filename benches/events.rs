//! Event-driven accumulation against the GEMM, on the projection shapes of the shipped models:
//! the measurement behind `snnc::exec::kernels::events::event_crossover`.
//!
//!     cargo bench --bench events
//!
//! For each shape and spike density it prints the time of `y += x W` as a GEMM, event by event
//! from 0/1 values and from spike bits (best of several repetitions), and the GEMM's time over
//! the bits'; where that ratio is above 1 the events win.

use std::hint::black_box;
mod common;

use common::best_of;

use snnc::exec::kernels::bits::Bits;
use snnc::exec::kernels::events::{Rows, accumulate};
use snnc::exec::kernels::gemm::dense;

fn main() {
    let shapes = [
        ("lab input 784 -> 10, 32 x 50 rows", 1600, 784, 10),
        ("tutorial-5 hidden 1000 -> 10, 32 x 25 rows", 800, 1000, 10),
        ("784 -> 1000, 32 rows", 32, 784, 1000),
    ];
    println!("{:<44} {:>8} {:>10} {:>10} {:>10} {:>12}", "shape", "density", "GEMM us", "events us", "bits us", "GEMM/bits");
    for (name, rows, n_pre, n_post) in shapes {
        let w: Vec<f32> = (0..n_pre * n_post).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        for density in [0.01, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30] {
            let threshold = (density * 1_000_003.0) as usize;
            let x: Vec<f32> = (0..rows * n_pre).map(|k| f32::from(u8::from((k * 7_654_321 + 17) % 1_000_003 < threshold))).collect();
            let mut y = vec![0.0f32; rows * n_post];
            let gemm = best_of(20, || dense(rows, n_pre, n_post, black_box(&x), &w, black_box(&mut y)));
            let events = best_of(20, || accumulate(Rows::Values(black_box(&x)), &w, black_box(&mut y), n_pre, n_post));
            let mut bits = Bits::zeros(x.len());
            bits.store(0, &x);
            let from_bits = best_of(20, || accumulate(Rows::Bits(black_box(&bits), 0..x.len()), &w, black_box(&mut y), n_pre, n_post));
            println!(
                "{name:<44} {density:>8.2} {:>10.1} {:>10.1} {:>10.1} {:>12.2}",
                gemm * 1e6,
                events * 1e6,
                from_bits * 1e6,
                gemm / from_bits
            );
        }
    }
}
