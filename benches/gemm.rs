//! The f64 GEMM crates on the runtime's shapes (one thread): the measurement behind the choice
//! of `gemm` for dense projections.
//!
//!     cargo bench --bench gemm

use std::hint::black_box;
mod common;

use common::best_of;

fn main() {
    // (name, m, k, n): y[m x n] += x[m x k] w[k x n], all row-major.
    let shapes = [
        ("hoisted input 128 x 784 . 784 x 1000", 128, 784, 1000),
        ("hoisted weight gradient 784 x 128 . 128 x 1000", 784, 128, 1000),
        ("hidden->out dX 800 x 10 . 10 x 1000", 800, 10, 1000),
        ("hidden->out forward 800 x 1000 . 1000 x 10", 800, 1000, 10),
        ("lab input 1600 x 784 . 784 x 10", 1600, 784, 10),
    ];
    println!("{:<50} {:>16} {:>12} {:>8}", "shape", "matrixmultiply", "gemm", "ratio");
    for (name, m, k, n) in shapes {
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 7919) % 1000) as f64 / 1000.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f64 / 1000.0 - 0.5).collect();
        let mut c = vec![0.0; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let mm = best_of(10, || unsafe {
            matrixmultiply::dgemm(
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
        let ge = best_of(10, || unsafe {
            gemm::gemm(
                m,
                n,
                k,
                black_box(c.as_mut_ptr()),
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
                gemm::Parallelism::None,
            );
        });
        println!("{name:<50} {:>10.1} GF/s {:>6.1} GF/s {:>8.2}", flops / mm / 1e9, flops / ge / 1e9, mm / ge);
    }
}
