//! The sampling the small benches share with `filter_call`: 50 samples over
//! 3 s after 1 s of warm-up.

use criterion::Criterion;
use std::time::Duration;

pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
