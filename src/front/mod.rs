//! The front end: text to a syntax tree with spans ([`parse`], [`ast`]), diagnostics
//! ([`diag`]), unit algebra ([`units`]) and the canonical formatter ([`fmt`]).

pub mod ast;
pub mod diag;
pub mod fmt;
pub mod parse;
mod syntax;
pub mod units;
