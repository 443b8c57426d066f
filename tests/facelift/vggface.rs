//! VGG-Face as DeepFace runs it: the converter's output, run by our engine, against DeepFace's
//! own numbers (`../shared/fixtures/vggface-parity/`), with the fixed-seed weights that
//! `scripts/setup --for-tests` generates and converts into `.cache/vggface/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use facelift::face::gallery::build;
use facelift::face::{Engine, EngineConfig, ModelSet, VggOutput};
use facelift::store::Store;
use ndarray::Array4;

use crate::helpers::{make_gallery, pool, read_npy_f32, repo_root, shared};

fn fixtures() -> PathBuf {
    shared().join("fixtures/vggface-parity")
}

/// A models folder holding the default detector and landmarks and the converted test model.
fn models_dir() -> tempfile::TempDir {
    let cache = repo_root().join(".cache/vggface");
    assert!(
        cache.join("vgg-face.onnx.data").is_file(),
        "no converted test model in {}: run scripts/setup --for-tests",
        cache.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for (from, name) in [
        (repo_root().join("models/fr_detect.onnx"), "fr_detect.onnx"),
        (
            repo_root().join("models/fr_landmark.onnx"),
            "fr_landmark.onnx",
        ),
        (cache.join("vgg-face.onnx"), "vgg-face.onnx"),
        (cache.join("vgg-face.onnx.data"), "vgg-face.onnx.data"),
    ] {
        std::os::unix::fs::symlink(&from, dir.path().join(name)).expect("link");
    }
    dir
}

fn engine(output: VggOutput, dir: &Path) -> Engine {
    let config = EngineConfig {
        liveness: false,
        ..EngineConfig::default()
    };
    Engine::load(&ModelSet::vgg_face(output), dir, config).expect("the converted VGG-Face loads")
}

fn input(name: &str) -> Array4<f32> {
    let (shape, values) = read_npy_f32(&fixtures().join(format!("{name}_input.npy")));
    assert_eq!(shape, [1, 224, 224, 3]);
    Array4::from_shape_vec((1, 224, 224, 3), values).expect("shape")
}

/// max |ours - theirs| / max |theirs|
fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(theirs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    worst / scale
}

#[test]
fn the_converted_vgg_face_computes_what_deepface_computes() {
    let dir = models_dir();
    for (output, layer) in [(VggOutput::Fc8, "fc8"), (VggOutput::Fc7, "fc7")] {
        let mut engine = engine(output, dir.path());
        for name in ["synthetic", "img1_skip", "img2_skip"] {
            let ours = engine.run_embedder_raw(&input(name)).expect("forward");
            let (_, theirs) = read_npy_f32(&fixtures().join(format!("{name}_{layer}.npy")));
            let error = relative_error(&ours, &theirs);
            println!("{name} {layer}: max relative error {error:.2e}");
            assert!(error <= 1e-4, "{name} {layer}: {error:.2e}");
        }
    }
}

#[test]
fn our_resize_and_pad_matches_deepfaces_input_but_for_jpeg_rounding() {
    let dir = models_dir();
    let engine = engine(VggOutput::Fc8, dir.path());
    for name in ["img1", "img2"] {
        let bytes =
            std::fs::read(shared().join(format!("data/deepface-faces/{name}.jpg"))).expect("photo");
        let ours = engine.whole_image_input(&bytes).expect("input");
        let (_, theirs) = read_npy_f32(&fixtures().join(format!("{name}_skip_input.npy")));
        let diffs: Vec<f32> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs() * 255.0)
            .collect();
        let worst = diffs.iter().fold(0f32, |m, d| m.max(*d));
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        let exact = diffs.iter().filter(|d| **d < 0.5).count() as f32 / diffs.len() as f32;
        println!(
            "{name}: worst {worst:.1} levels, mean {mean:.3} levels, {:.1}% exact",
            exact * 100.0
        );
        // the padding is exactly where DeepFace puts it: zero rows and columns agree
        let zero_theirs = theirs.iter().filter(|v| **v == 0.0).count();
        let zero_both = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| **a == 0.0 && **b == 0.0)
            .count();
        assert!(
            zero_both as f32 >= 0.99 * zero_theirs as f32,
            "{name}: padding differs"
        );
        // measured: worst 3 levels, mean 0.05, 95.6% of values exact; the rest is the JPEG
        // decoders (libjpeg-turbo in OpenCV, jpeg-decoder here) rounding their IDCT apart
        assert!(worst <= 4.0, "{name}: worst {worst}");
        assert!(mean <= 0.1, "{name}: mean {mean}");
        assert!(exact >= 0.9, "{name}: {exact} exact");
    }
}

#[test]
fn the_converter_refuses_what_is_not_vgg_face_and_says_where_to_get_it() {
    let script = repo_root().join("scripts/convert-vggface");
    let nothing = Command::new(&script).output().expect("run the converter");
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("vgg_face_weights.h5"));

    // a Keras weights file with one layer of the wrong shape
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong.h5");
    let python = repo_root().join(".deps/venv/bin/python");
    let made = Command::new(&python)
        .arg("-c")
        .arg(
            "import h5py, numpy as np, sys\n\
             f = h5py.File(sys.argv[1], 'w')\n\
             f.attrs['layer_names'] = np.array([b'conv2d'], dtype=object)\n\
             g = f.create_group('conv2d')\n\
             g.attrs['weight_names'] = np.array([b'conv2d/kernel:0', b'conv2d/bias:0'], dtype=object)\n\
             g.create_dataset('conv2d/kernel:0', data=np.zeros((3, 3, 3, 32), np.float32))\n\
             g.create_dataset('conv2d/bias:0', data=np.zeros(32, np.float32))\n",
        )
        .arg(&wrong)
        .status()
        .expect("python");
    assert!(made.success());
    let out = dir.path().join("out.onnx");
    let refused = Command::new(&script)
        .arg(&wrong)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the converter");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("not VGG-Face's layer shapes"), "{stderr}");
    assert!(!out.exists(), "nothing written");

    let not_hdf5 = dir.path().join("photo.h5");
    std::fs::write(&not_hdf5, b"not an HDF5 file").expect("write");
    let refused = Command::new(&script).arg(&not_hdf5).output().expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot read"));
}

#[test]
fn switching_to_vgg_face_re_embeds_the_gallery_and_never_mixes_the_models() {
    let dir = models_dir();
    let store = Store::open_in_memory().expect("store");
    let people = make_gallery(&[("person01", &["img1.jpg", "img2.jpg"])]);
    let (default_gallery, _) = build(people.path(), pool(), &store, &|| {}).expect("default");

    let mut settings = crate::helpers::settings();
    settings.models_dir = dir.path().to_path_buf();
    settings.model = "vgg-face".into();
    settings.engine.liveness = false;
    let vgg = facelift::open_engine_pool(&settings).expect("the VGG-Face pool");
    let (vgg_gallery, report) = build(people.path(), &vgg, &store, &|| {}).expect("vgg-face");
    assert_eq!(
        (report.embedded, report.from_cache),
        (2, 0),
        "re-embedded from the photos"
    );
    assert_eq!(vgg_gallery.model_id, "vgg-face-fc8");
    assert_ne!(vgg_gallery.model_id, default_gallery.model_id);
    let template = &vgg_gallery.people[0].templates[0].embedding;
    assert_eq!(template.len(), 2622);
    assert_eq!(default_gallery.people[0].templates[0].embedding.len(), 512);
    for key in [vgg.cache_key(), pool().cache_key()] {
        assert_eq!(
            store.cached_embedding_count(&key).expect("count"),
            2,
            "{key}"
        );
    }
    // switching back and forth reuses each model's own cache
    let (_, again) = build(people.path(), &vgg, &store, &|| {}).expect("again");
    assert_eq!((again.embedded, again.from_cache), (0, 2));
}

#[test]
fn represent_with_vgg_face_gives_deepfaces_skip_embedding() {
    let dir = models_dir();
    let photo = shared().join("data/deepface-faces/img1.jpg");
    for (output, size) in [("fc8", 2622), ("fc7", 4096)] {
        let run = Command::new(env!("CARGO_BIN_EXE_facelift"))
            .args(["--model", "vgg-face", "--models-dir"])
            .arg(dir.path())
            .args(["represent", "--output", output, "--no-detect", "--json"])
            .arg(&photo)
            .output()
            .expect("run facelift");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
        assert_eq!(value["model"], format!("vgg-face-{output}"));
        assert_eq!(
            value["box"],
            serde_json::Value::Null,
            "the whole image, no detection"
        );
        let ours: Vec<f32> = value["embedding"]
            .as_array()
            .expect("embedding")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect();
        assert_eq!(ours.len(), size);
        let (_, theirs) = read_npy_f32(&fixtures().join(format!("img1_skip_{output}.npy")));
        let agreement = facelift::face::cosine(&ours, &theirs)
            / theirs.iter().map(|v| v * v).sum::<f32>().sqrt();
        println!("img1 {output}: cosine with DeepFace's {agreement:.6}");
        assert!(agreement >= 0.9999, "{output}: {agreement}");
    }
}
