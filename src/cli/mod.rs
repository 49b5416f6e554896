//! The command line's library half: files, data, checkpoints and `--set` ([`driver`]), and the
//! images and tables a run writes beside its metrics ([`figures`]).

pub mod driver;
pub mod figures;
