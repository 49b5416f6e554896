//! snnc: a declarative language for spiking neural networks, its compiler and runtime.
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md):
//! text → [`parse`] → [`ast`] → [`check`] (names, imports, units, shapes) → [`lower`] → [`ir`].

pub mod ast;
pub mod diag;
pub mod parse;
