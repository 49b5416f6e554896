//! Execution: engine-independent state ([`state`]: parameters, traces, samples, random keys;
//! [`pool`]: per-thread buffers; [`real`]: the float type), the engines behind one trait
//! ([`engine`]: the scalar [`oracle`] and the Cranelift [`jit`] with its [`schedule`]s), and
//! the precompiled [`kernels`] they call (GEMM, events, connectivity loops, spike bits), and the
//! [`plasticity`] of synapses (traces, `on pre` / `on post` updates) that STDP runs after each step.

pub mod engine;
pub mod jit;
pub mod kernels;
pub mod oracle;
pub mod plasticity;
pub mod pool;
pub mod real;
pub mod schedule;
pub mod state;
