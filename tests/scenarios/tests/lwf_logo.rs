//! Scenario 5, the LWF logo stress, at CI size: LSO-sized sends, RESOURCES
//! receives, pause/restart with completions overlapping the pauses, media
//! and reset status indications and IOCTL threads, all at once on two
//! adapters; then the exact counting and connectivity checks. Once with
//! special pool, once without (and another seed).

mod common;

use std::time::{Duration, Instant};

use portwatch_scenarios::harness_target::{driver_path, Completion, HarnessConfig, HarnessTarget};
use portwatch_scenarios::{Params, Scenario};

fn run(special_pool: bool, seed: u64) {
    let config = HarnessConfig {
        special_pool,
        completion: Completion::Delayed(Duration::from_micros(200)),
        ..HarnessConfig::new(&driver_path(), 2)
    };
    let t = HarnessTarget::load(config).expect("load portwatch.sys");
    let started = Instant::now();
    let s = Scenario::LwfLogo.run(&t, &Params::ops(common::THREADS, 8_000, seed));
    eprintln!("lwf-logo (special pool {special_pool}, seed {seed}) took {:?}", started.elapsed());
    common::assert_clean(&s, 8_000);
    assert!(s.packets > 0, "{s}");
    for element in [
        "FilterPause calls",
        "pauses begun with NBLs outstanding",
        "sends completed NDIS_STATUS_PAUSED",
        "status indications",
        "NET_BUFFERs to the miniport",
        "NET_BUFFERs to the protocol",
    ] {
        assert!(s.model_count(element) > 0, "no {element}: {s}");
    }
}

#[test]
fn lwf_logo_stress_is_clean_with_special_pool() {
    run(true, 5);
}

#[test]
fn lwf_logo_stress_is_clean_without_special_pool() {
    run(false, 6);
}
