//! Dense (im2col and GEMM) against event-driven convolution products, on the layers of the
//! spiking conv auto-encoder (`models/sae_*.snn`): the measurement behind
//! `snnc::exec::kernels::conv::EVENT_CROSSOVER`.
//!
//!     cargo bench --bench conv
//!
//! For each layer and spike density it prints, over 128 images (f32, all threads), the time of
//! the product that has an event-driven path (a convolution's forward pass and weight gradient
//! from input spikes; a transposed convolution's forward pass and weight gradient from its
//! input spikes), dense and event-driven, and dense over events; where that ratio is above 1
//! the events win.

use std::hint::black_box;
mod common;

use common::best_of;

use snnc::exec::kernels::conv::{Geometry, Spikes, adjoint, forward, weight_grad};

fn main() {
    let geo = |in_c, in_hw, out_c, out_hw| Geometry {
        in_c,
        in_h: in_hw,
        in_w: in_hw,
        out_c,
        out_h: out_hw,
        out_w: out_hw,
        kernel: [5; 2],
        stride: [1; 2],
        padding: [0; 2],
        dilation: [1; 2],
        groups: 1,
    };
    // A transposed layer runs the convolution from its target to its source.
    let layers = [
        ("conv 1x28x28 -> 16x24x24", geo(1, 28, 16, 24), false),
        ("conv 16x24x24 -> 32x20x20", geo(16, 24, 32, 20), false),
        ("convT 32x20x20 -> 16x24x24", geo(16, 24, 32, 20), true),
        ("convT 16x24x24 -> 1x28x28", geo(1, 28, 16, 24), true),
    ];
    let rows = 128;
    println!("{:<28} {:<14} {:>8} {:>10} {:>10} {:>12}", "layer", "product", "density", "dense ms", "events ms", "dense/events");
    for (name, g, transposed) in layers {
        let w: Vec<f32> = (0..g.weights()).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        // The spiking side: a convolution's input, a transposed convolution's input (the
        // convolution's output side); the other side dense values.
        let (spike_len, other_len) = if transposed { (g.out_len(), g.in_len()) } else { (g.in_len(), g.out_len()) };
        let other: Vec<f32> = (0..rows * other_len).map(|k| ((k * 31) % 97) as f32 / 97.0 - 0.5).collect();
        for density in [0.005, 0.01, 0.02, 0.05, 0.10, 0.20] {
            let threshold = (density * 1_000_003.0) as usize;
            let spikes: Vec<f32> =
                (0..rows * spike_len).map(|k| f32::from(u8::from((k * 7_654_321 + 17) % 1_000_003 < threshold))).collect();
            let mut out = vec![0.0f32; rows * other_len];
            let mut dw = vec![0.0f32; g.weights()];
            let (dense_fwd, events_fwd, dense_dw, events_dw) = if transposed {
                (
                    best_of(5, || adjoint(&g, &w, black_box(&spikes), black_box(&mut out), rows, false)),
                    best_of(5, || adjoint(&g, &w, black_box(&spikes), black_box(&mut out), rows, true)),
                    best_of(5, || weight_grad(&g, black_box(&other), &spikes, black_box(&mut dw), rows, None)),
                    best_of(5, || weight_grad(&g, black_box(&other), &spikes, black_box(&mut dw), rows, Some(Spikes::Output))),
                )
            } else {
                (
                    best_of(5, || forward(&g, &w, black_box(&spikes), black_box(&mut out), rows, false)),
                    best_of(5, || forward(&g, &w, black_box(&spikes), black_box(&mut out), rows, true)),
                    best_of(5, || weight_grad(&g, black_box(&spikes), &other, black_box(&mut dw), rows, None)),
                    best_of(5, || weight_grad(&g, black_box(&spikes), &other, black_box(&mut dw), rows, Some(Spikes::Input))),
                )
            };
            for (product, dense, events) in [("forward", dense_fwd, events_fwd), ("weight grad", dense_dw, events_dw)] {
                println!("{name:<28} {product:<14} {density:>8.3} {:>10.2} {:>10.2} {:>12.2}", dense * 1e3, events * 1e3, dense / events);
            }
        }
    }
}
