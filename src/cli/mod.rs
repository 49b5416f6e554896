//! The command line's library half: files, data, checkpoints and `--set` ([`driver`]), the
//! images and tables a run writes beside its metrics ([`figures`]), and the figures of
//! `snnc plot` ([`plot`]).

pub mod driver;
pub mod figures;
pub mod plot;
