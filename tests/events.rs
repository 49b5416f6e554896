//! The event-driven path of the compiled engine actually runs, and agrees with the oracle. In a
//! test binary of its own: the count of event-driven passes is per process, and no other test
//! may add to it while this one runs.

mod common;

#[test]
fn event_driven_accumulation_ran_and_matches_the_oracle() {
    // About 2% of the Bernoulli inputs fire: below the crossover, so the input projection and
    // its weight gradient run event by event.
    let mut m = common::load("lab_lif_mnist.snn");
    m.steps = 12;
    let m = common::valid(m);
    let density: f32 = common::features(784, 0).iter().map(|x| x * 0.05).sum::<f32>() / 784.0;
    assert!(f64::from(density) < snnc::exec::kernels::events::event_crossover::<f64>(10, false), "{density}");
    let before = snnc::exec::kernels::events::event_passes();
    common::gradients_match::<f64>("lab_lif_mnist.snn (sparse input)", &m, 0.05, 1e-9);
    assert!(snnc::exec::kernels::events::event_passes() > before, "the event-driven kernels ran");
}
