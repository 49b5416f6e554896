//! The command line's library half: files, data, checkpoints and `--set` ([`driver`]), the
//! images and tables a run writes beside its metrics ([`figures`]), the figures of
//! `snnc plot` ([`plot`]), and NIR export and import ([`nir`]).

pub mod driver;
pub mod figures;
pub mod nir;
pub mod plot;
