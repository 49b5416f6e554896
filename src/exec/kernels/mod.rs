//! Precompiled kernels the engines call around the JIT's per-population code: dense products
//! through the `gemm` crate ([`gemm`]), event-driven accumulation over spike bits
//! ([`events`], [`bits`]), convolutions over many images, dense and event-driven ([`conv`]),
//! the per-sample loops of the other connectivities ([`connectivity`]), the normalisation a
//! state-carrying connection may apply ([`normalize`]), and the short vector loops of the
//! event paths, chosen for the CPU at run time ([`simd`]).

pub mod bits;
pub mod connectivity;
pub mod conv;
pub mod events;
pub mod gemm;
pub mod normalize;
pub mod pool;
pub mod simd;
