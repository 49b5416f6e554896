//! The command line's library half: files, data, checkpoints and `--set` ([`driver`]), and the
//! images and tables a run writes beside its metrics ([`figures`]), NIR export and import
//! ([`nir`]).

pub mod driver;
pub mod figures;
pub mod nir;
