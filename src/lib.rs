//! snnc: a declarative language for spiking neural networks, its compiler and runtime.
//!
//! The folders are the stages (see ARCHITECTURE.md); each imports only the ones below it:
//! - [`front`]: text to a syntax tree with spans, diagnostics, units, the formatter;
//! - [`lower`]: names, imports, units, shapes and learning-method support, to the IR;
//! - [`ir`]: the module every engine and method consumes, its validator and its passes (the
//!   flattened step graph and its adjoint);
//! - [`exec`]: engine-independent state (parameters, traces, random keys), the engines (the
//!   scalar oracle and the Cranelift JIT) behind one trait, and the kernels they call;
//! - [`train`]: the training loop, learning methods behind one trait, optimisers, losses and
//!   metrics;
//! - [`nir`]: NIR graphs (HDF5 bytes, export from the IR, import to `.snn` text);
//! - [`cli`]: the only code that touches files;
//! - [`api`]: the library facade over them all: compile a model from text, train it, read
//!   spikes and weights back (`examples/library.rs`).

pub mod api;
pub mod cli;
pub mod data;
pub mod exec;
pub mod front;
pub mod ir;
pub mod lower;
pub mod nir;
pub mod train;
