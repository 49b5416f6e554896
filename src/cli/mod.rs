//! The command line's library half: files, data, checkpoints and `--set` ([`driver`]).

pub mod driver;
