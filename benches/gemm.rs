//! The f32 GEMM on the runtime's shapes and the machine's f32 GEMM peak: the measurement
//! behind the choice of the `gemm` crate for dense projections and the denominator of each
//! configuration's share of the machine's limit (docs/results.md).
//!
//!     cargo bench --bench gemm
//!
//! For each shape: matrixmultiply's sgemm and the `gemm` crate on one thread, and the `gemm`
//! crate on two threads (rayon), in GFLOP/s, best of several repetitions. The last line is the
//! peak: a large square product on two threads.

use std::hint::black_box;
mod common;

use common::best_of;

/// `c[m x n] += a[m x k] b[k x n]`, row-major, through the `gemm` crate.
fn gemm_f32(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32], parallelism: gemm::Parallelism) {
    // SAFETY: the slices have the stated row-major shapes and `c` is separate.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            true,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn main() {
    // (name, m, k, n): y[m x n] += x[m x k] w[k x n], all row-major.
    let shapes = [
        ("hoisted input 128 x 784 . 784 x 1000", 128, 784, 1000),
        ("hoisted weight gradient 784 x 128 . 128 x 1000", 784, 128, 1000),
        ("hidden->out dX 800 x 10 . 10 x 1000", 800, 10, 1000),
        ("hidden->out forward 800 x 1000 . 1000 x 10", 800, 1000, 10),
        ("lab input 1600 x 784 . 784 x 10", 1600, 784, 10),
        ("peak: 1024 x 1024 . 1024 x 1024", 1024, 1024, 1024),
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("two threads");
    println!("{:<50} {:>16} {:>14} {:>16}", "shape (f32)", "matrixmultiply", "gemm 1 thread", "gemm 2 threads");
    for (name, m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let reps = if m * k * n > 100_000_000 { 5 } else { 20 };
        // SAFETY: row-major shapes as stated; `c` is separate.
        let mm = best_of(reps, || unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                1.0,
                black_box(c.as_mut_ptr()),
                n as isize,
                1,
            );
        });
        let one = best_of(reps, || gemm_f32(m, k, n, &a, &b, black_box(&mut c), gemm::Parallelism::None));
        let two = pool.install(|| best_of(reps, || gemm_f32(m, k, n, &a, &b, black_box(&mut c), gemm::Parallelism::Rayon(2))));
        println!("{name:<50} {:>11.1} GF/s {:>9.1} GF/s {:>11.1} GF/s", flops / mm / 1e9, flops / one / 1e9, flops / two / 1e9);
    }
}
