//! Live metrics for dashboards: the run's progress as Prometheus metrics, pushed to a
//! Pushgateway (`metrics:` in the playbook). [`RunState`] folds the events into what the
//! dashboards show and renders it; [`Pushgateway`] is the sink that pushes it.

mod pushgateway;
mod state;

pub use pushgateway::{Pushgateway, FINISH_WAIT, PUSH_TIMEOUT};
pub use state::{HostState, RunState};
