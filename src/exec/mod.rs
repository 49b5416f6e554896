//! Execution: engine-independent state ([`state`]: parameters, traces, samples, random keys;
//! [`pool`]: per-thread buffers; [`real`]: the float type), the engines behind one trait
//! ([`engine`]: the scalar [`oracle`] and the Cranelift [`jit`] with its [`schedule`]s), and
//! the precompiled [`kernels`] they call (GEMM, events, connectivity loops, spike bits).

pub mod engine;
pub mod jit;
pub mod kernels;
pub mod oracle;
pub mod pool;
pub mod real;
pub mod schedule;
pub mod state;
