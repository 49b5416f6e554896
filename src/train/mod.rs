//! Training: the loop ([`run`]), the learning-method seam ([`method`]) with one module per
//! method ([`bptt`] now; `stdp`, `eventprop` and `fptt` next), optimisers and schedules
//! ([`optim`]), loss terms and their gradients ([`loss`]), the train block's per-sample hooks,
//! clamps and records ([`hooks`]), evaluation metrics ([`metrics`]) and the generative check
//! ([`generate`]).

pub mod bptt;
pub mod eventprop;
pub mod fptt;
pub mod generate;
pub mod hooks;
pub mod loss;
pub mod method;
pub mod metrics;
pub mod optim;
pub mod run;
pub mod stdp;

pub use method::RunError;
pub use run::{EpochMetrics, Observer, Quiet, RunConfig, Snapshot, evaluate_module, train_module};
