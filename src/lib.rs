//! snnc: a declarative language for spiking neural networks, its compiler and runtime.
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md):
//! text → [`parse`] → [`ast`] → [`lower`] (names, imports, units, shapes, learning-method
//! support; produces the IR only when there are no errors) → [`ir`] and [`ir_train`].
//! [`fmt`] prints the AST canonically; [`diag`] holds every diagnostic; [`driver`] is the only
//! front-end module that touches files.

pub mod ast;
pub mod batched;
pub mod bits;
pub mod data;
pub mod diag;
pub mod driver;
pub mod fmt;
pub mod grad;
pub mod interp;
pub mod ir;
pub mod ir_train;
pub mod jit;
pub mod loss;
pub mod lower;
pub mod parse;
pub mod runtime;
pub mod tape;
pub mod units;
