//! The spiking conv auto-encoder's run outputs: after every epoch the activity measures of
//! seeds/004 per layer, the test images beside their reconstructions, and every layer's spike
//! raster for the first image; and the shipped files as the paper has them.

mod common;

use snnc::train::metrics::{SHOWCASE_SAMPLES, Showcase};
use snnc::train::{EpochMetrics, Observer, RunConfig, Snapshot};

/// A small auto-encoder of the shipped files' kind: a strided convolution down and a strided
/// transposed convolution back, BoundedLIF, the cumulative potential read out.
const MODEL: &str = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork Small {\n    steps = 12\n    \
    input pixels[1, 28, 28] = noisy_bernoulli(image, scale = 0.5, noise = 0.1)\n    population c[4, 12, 12] = BoundedLIF\n    \
    population out[1, 28, 28] = BoundedLIF\n    connect pixels -> c : conv2d(kernel = 5, stride = 2, init = kaiming_normal())\n    \
    connect c -> out : conv_transpose2d(kernel = 5, stride = 2, output_padding = 1, init = kaiming_normal())\n}\n\
    train {\n    data = mnist(dir = env(\"SNNC_MNIST_DIR\", \"data/mnist\"))\n    method = bptt(surrogate = straight_through_above())\n    \
    loss rec = sum(square(max_t(out.cumulative) / 0.5 - image))\n    reconstruction = max_t(out.cumulative) / 0.5\n    \
    optimizer = adam(lr = 1e-3)\n    batch = 8\n}\n";

#[derive(Default)]
struct Collect {
    showcases: Vec<Showcase>,
    metrics: Vec<EpochMetrics>,
}

impl Observer<f32> for Collect {
    fn showcase(&mut self, showcase: &Showcase) -> Result<(), String> {
        self.showcases.push(showcase.clone());
        Ok(())
    }

    fn epoch(&mut self, metrics: &EpochMetrics, _snapshot: &Snapshot<f32>) -> Result<(), String> {
        self.metrics.push(metrics.clone());
        Ok(())
    }
}

fn decode(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("one frame");
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

#[test]
fn a_run_shows_reconstructions_rasters_and_activity() {
    let Some(dir) = std::env::var_os("SNNC_MNIST_DIR") else {
        panic!("set SNNC_MNIST_DIR to the MNIST folder (.ci/run sets it to ../shared/data/mnist)");
    };
    let module = common::valid(common::module(MODEL));
    let data = snnc::cli::driver::load_data(module.train.as_ref().expect("train"), Some(std::path::Path::new(&dir))).expect("MNIST");
    let config = RunConfig { epochs: Some(1), limit_train: Some(16), limit_test: Some(16), ..Default::default() };
    let mut observer = Collect::default();
    snnc::train::train_module::<f32>(&module, &data, &config, None, &mut observer).expect("trains");
    let [show] = &observer.showcases[..] else { panic!("one showcase per epoch, got {}", observer.showcases.len()) };
    assert_eq!((show.inputs.len(), show.reconstructions.len()), (SHOWCASE_SAMPLES, SHOWCASE_SAMPLES));
    assert!(show.inputs.iter().chain(&show.reconstructions).all(|image| image.len() == 784));
    assert_eq!(show.inputs[0], data.test.sample(0).iter().map(|x| f64::from(*x)).collect::<Vec<_>>(), "the first test image");
    assert!(show.reconstructions.iter().flatten().any(|x| *x > 0.0), "the output integrates something");
    let names: Vec<&str> = show.rasters.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["c", "out"]);
    for (name, size, steps) in &show.rasters {
        assert_eq!(steps.len(), 12, "{name}: a column per step");
        assert!(steps.iter().flatten().all(|j| j < size), "{name}: neurons inside the population");
    }
    // The activity measures, per layer, in the epoch's metrics.
    let metrics = &observer.metrics[0];
    assert_eq!(metrics.activity.len(), 2);
    for (name, a) in &metrics.activity {
        assert!((a.inp + a.anr - 1.0).abs() < 1e-12 && (0.0..=1.0).contains(&a.afr) && (0.0..=1.0).contains(&a.rae), "{name}: {a:?}");
    }
    // The reconstruction error on the test samples, beside the training mean.
    let [(name, test_rec)] = &metrics.test_losses[..] else { panic!("one test loss: {:?}", metrics.test_losses) };
    assert!(name == "rec" && test_rec.is_finite() && *test_rec > 0.0, "{name}: {test_rec}");
    let c_spikes = metrics.spikes_per_neuron[0].1;
    assert!(c_spikes > 0.0 && metrics.activity[0].1.anr > 0.0, "the convolutional layer fires");
    // The figures: inputs over reconstructions, 3 pixels per value; rasters steps x neurons.
    let folder = std::env::temp_dir().join(format!("snnc_showcase_{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("folder");
    let written = snnc::cli::figures::write_showcase(&folder, show).expect("writes");
    assert_eq!(written, ["reconstructions.png", "raster_c.png", "raster_out.png"]);
    let (width, height, pixels) = decode(&folder.join("reconstructions.png"));
    let tile = 28 * 3 + 2;
    assert_eq!((width, height), (SHOWCASE_SAMPLES as u32 * tile + 2, 2 * tile + 2));
    let levels: std::collections::BTreeSet<u8> = pixels.iter().copied().collect();
    assert!(levels.len() > 20, "not blank: {} grey levels", levels.len());
    let (width, height, pixels) = decode(&folder.join("raster_c.png"));
    assert_eq!((width, height), (12, 4 * 12 * 12));
    let fired: usize = show.rasters[0].2.iter().map(Vec::len).sum();
    assert_eq!(pixels.iter().filter(|p| **p == 255).count(), fired, "a white pixel per spike");
    std::fs::remove_dir_all(&folder).ok();
}

/// The three shipped auto-encoders as seeds/004 has them: the noise drawn once per image, P1
/// and P2 on the cumulative potential at the last step, gradient through a spike only where the
/// threshold is reached (BoundedLIF's cumulative potential against eq 7:
/// tests/stdlib_neurons.rs).
#[test]
fn the_shipped_auto_encoders_follow_the_paper() {
    for name in ["sae_dense.snn", "sae_sparse.snn", "sae_unregularised.snn"] {
        let module = common::load(name);
        let train = module.train.as_ref().expect("train");
        assert!(train.reconstruction.is_some(), "{name}: shows reconstructions");
        assert!(
            matches!(&train.method, snnc::ir::train::Method::Bptt { surrogate } if surrogate.name == "straight_through_above"),
            "{name}: gradient through a spike only at the threshold"
        );
        let dump = module.to_string();
        assert!(dump.contains("rand_per_sample()"), "{name}: the noise is drawn once per image");
        assert!(!dump.contains("last_t(c1.u)") && !dump.contains("last_t(out.u)"), "{name}: P1/P2 read the cumulative potential");
    }
}
