//! VGG-Face as DeepFace runs it: the converter's output, run by our engine, against DeepFace's
//! own numbers (`../shared/fixtures/vggface-parity/`), with the fixed-seed weights that
//! `scripts/setup --for-tests` generates and converts into `.cache/vggface/`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use facelift::face::gallery::build;
use facelift::face::{Engine, EngineConfig, ModelName, ModelSet, Precision, VggOutput};
use facelift::store::Store;
use ndarray::Array4;

use facelift::face::int8::{CpuFeatures, Int8Format, Int8Kernels, Int8Report, check_int8_model};

use crate::helpers::{
    facelift_json, int8_model_or_skip, make_gallery, pool, read_npy_f32, repo_root, shared,
};

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
        // the int8 model and its report, when setup made them on this CPU
        (cache.join("vgg-face-int8.onnx"), "vgg-face-int8.onnx"),
        (
            cache.join("vgg-face-int8.onnx.data"),
            "vgg-face-int8.onnx.data",
        ),
        (cache.join("vgg-face-int8.json"), "vgg-face-int8.json"),
    ] {
        if from.is_file() {
            std::os::unix::fs::symlink(&from, dir.path().join(name)).expect("link");
        }
    }
    dir
}

/// `facelift --model vgg-face --models-dir DIR ARGS PATHS...`, its JSON.
fn vgg_facelift(dir: &Path, args: &[&str], paths: &[&Path]) -> serde_json::Value {
    let mut all: Vec<&OsStr> = vec![
        "--model".as_ref(),
        "vgg-face".as_ref(),
        "--models-dir".as_ref(),
    ];
    all.push(dir.as_os_str());
    all.extend(args.iter().map(OsStr::new));
    all.extend(paths.iter().map(|p| p.as_os_str()));
    facelift_json(&all)
}

fn engine(output: VggOutput, dir: &Path) -> Engine {
    engine_of(output, Precision::Fp32, dir)
}

fn engine_of(output: VggOutput, precision: Precision, dir: &Path) -> Engine {
    let config = EngineConfig {
        liveness: false,
        ..EngineConfig::default()
    };
    Engine::load(&ModelSet::vgg_face(output, precision), dir, config)
        .expect("the converted VGG-Face loads")
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
    settings.model = ModelName::VggFace;
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
    let template = &vgg_gallery.people()[0].templates[0].embedding;
    assert_eq!(template.len(), 2622);
    assert_eq!(
        default_gallery.people()[0].templates[0].embedding.len(),
        512
    );
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

    // the int8 variant is a model of its own: re-embedded, cached apart
    if !int8_model_or_skip(
        "switching_to_vgg_face_re_embeds_the_gallery_and_never_mixes_the_models",
        "switching to int8",
    ) {
        return;
    }
    settings.model_precision = Some(Precision::Int8);
    let int8 = facelift::open_engine_pool(&settings).expect("the int8 VGG-Face pool");
    let (int8_gallery, report) = build(people.path(), &int8, &store, &|| {}).expect("int8");
    assert_eq!((report.embedded, report.from_cache), (2, 0));
    assert_eq!(int8_gallery.model_id, "vgg-face-int8-fc8");
    assert_ne!(int8.cache_key(), vgg.cache_key());
    assert_eq!(
        store
            .cached_embedding_count(&vgg.cache_key())
            .expect("count"),
        2,
        "the fp32 templates stay as they were"
    );
}

#[test]
fn represent_with_vgg_face_gives_deepfaces_skip_embedding() {
    let dir = models_dir();
    let photo = shared().join("data/deepface-faces/img1.jpg");
    for (output, size) in [("fc8", 2622), ("fc7", 4096)] {
        let value = vgg_facelift(
            dir.path(),
            &["represent", "--output", output, "--no-detect", "--json"],
            &[&photo],
        );
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

#[test]
fn the_int8_vgg_face_agrees_with_fp32_on_the_fixture_photos_and_on_detected_faces() {
    if !int8_model_or_skip(
        "the_int8_vgg_face_agrees_with_fp32_on_the_fixture_photos_and_on_detected_faces",
        "the whole test",
    ) {
        return;
    }
    let dir = models_dir();
    let photos: Vec<Vec<u8>> = ["img1.jpg", "img2.jpg", "img4.jpg"]
        .iter()
        .map(|name| std::fs::read(shared().join("data/deepface-faces").join(name)).expect("photo"))
        .collect();
    for (output, layer) in [(VggOutput::Fc8, "fc8"), (VggOutput::Fc7, "fc7")] {
        let mut fp32 = engine(output, dir.path());
        let mut int8 = engine_of(output, Precision::Int8, dir.path());
        assert_eq!(int8.models().id, format!("vgg-face-int8-{layer}"));
        assert_ne!(int8.models().id, fp32.models().id, "own id, own cache");
        for name in ["img1_skip", "img2_skip", "synthetic"] {
            let reference = fp32.run_embedder(&input(name)).expect("fp32");
            let quantized = int8.run_embedder(&input(name)).expect("int8");
            let agreement = facelift::face::cosine(&reference, &quantized);
            println!("{name} {layer}: int8 against fp32 {agreement:.5}");
            assert!(agreement >= 0.999, "{name} {layer}: {agreement}");
        }
        // the faces our detector and alignment find, as the product embeds them
        for photo in &photos {
            let embed = |engine: &mut Engine| {
                engine
                    .analyze_bytes(photo, facelift::face::Which::Best)
                    .expect("a face")
                    .faces[0]
                    .embedding
                    .clone()
            };
            let agreement = facelift::face::cosine(&embed(&mut fp32), &embed(&mut int8));
            println!("detected face {layer}: int8 against fp32 {agreement:.5}");
            assert!(agreement >= 0.999, "{layer}: {agreement}");
        }
    }
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo_root().join(".cache/vggface/vgg-face-int8.json")).expect("report"),
    )
    .expect("json");
    assert!(
        report["min_cosine_vs_fp32"]["fc8"].as_f64() >= Some(0.999),
        "{report}"
    );
}

#[test]
fn model_inputs_are_the_crops_the_engine_embeds() {
    let dir = models_dir();
    let out = tempfile::tempdir().expect("tempdir");
    let photos = shared().join("data/deepface-faces");
    let value = vgg_facelift(
        dir.path(),
        &["model-inputs", "--json", "--out"],
        &[
            out.path(),
            &photos.join("img1.jpg"),
            &repo_root().join("Cargo.toml"),
        ],
    );
    assert_eq!(
        value["written"].as_array().map(Vec::len),
        Some(1),
        "{value}"
    );
    let skipped = &value["skipped"][0];
    assert!(
        skipped["photo"]
            .as_str()
            .is_some_and(|p| p.ends_with("Cargo.toml")),
        "{value}"
    );
    assert!(
        skipped["why"]
            .as_str()
            .is_some_and(|w| w.contains("not an image")),
        "{value}"
    );

    let written = PathBuf::from(value["written"][0].as_str().expect("path"));
    let (shape, values) = read_npy_f32(&written);
    assert_eq!(shape, [1, 224, 224, 3]);
    let crop = Array4::from_shape_vec((1, 224, 224, 3), values).expect("shape");
    let mut engine = engine(VggOutput::Fc8, dir.path());
    let from_crop = engine.run_embedder(&crop).expect("forward");
    let bytes = std::fs::read(photos.join("img1.jpg")).expect("photo");
    let analysed = engine
        .analyze_bytes(&bytes, facelift::face::Which::Best)
        .expect("a face");
    assert_eq!(
        from_crop, analysed.faces[0].embedding,
        "the very input login feeds"
    );
}

#[test]
fn the_quantizer_writes_nothing_when_int8_falls_short_of_the_bar() {
    let dir = models_dir();
    let out = tempfile::tempdir().expect("tempdir");
    let target = out.path().join("vgg-face-int8.onnx");
    let quantize = |photos: &[&str], bar: &str| {
        let mut command = Command::new(repo_root().join("scripts/quantize-vggface"));
        command
            .arg("--model")
            .arg(dir.path().join("vgg-face.onnx"))
            .arg("--models-dir")
            .arg(dir.path())
            .arg("--out")
            .arg(&target)
            .args(["--min-agreement", bar, "--"]);
        for photo in photos {
            command.arg(shared().join("data/deepface-faces").join(photo));
        }
        command.output().expect("run the quantizer")
    };
    let too_few = quantize(&["img1.jpg", "img2.jpg"], "0.999");
    let stderr = String::from_utf8_lossy(&too_few.stderr);
    assert!(!too_few.status.success());
    assert!(
        stderr.contains("2 face crops; at least 6 are needed"),
        "{stderr}"
    );

    // a bar no int8 model reaches: calibrated and checked, then refused
    let six = [
        "img1.jpg", "img2.jpg", "img3.jpg", "img4.jpg", "img5.jpg", "img6.jpg",
    ];
    let refused = quantize(&six, "0.9999999");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "falling short is its own exit status, which setup treats as a skipped speed-up: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&refused.stdout);
    let format = CpuFeatures::detect().recommended_int8_format();
    assert!(
        stdout.contains(&format!("format {format}")),
        "the format is this CPU's: {stdout}"
    );
    assert!(
        stderr.contains("nothing written, keep precision fp32"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(out.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_vgg_face_pair_embedded_in_one_batch_gives_what_each_photo_gives_alone() {
    let dir = models_dir();
    let photos = ["img1.jpg", "img2.jpg"]
        .map(|name| std::fs::read(shared().join("data/deepface-faces").join(name)).expect("photo"));
    let mut precisions = vec![Precision::Fp32];
    if int8_model_or_skip(
        "a_vgg_face_pair_embedded_in_one_batch_gives_what_each_photo_gives_alone",
        "the int8 pair",
    ) {
        precisions.push(Precision::Int8);
    }
    for precision in precisions {
        let mut engine = engine_of(VggOutput::Fc8, precision, dir.path());
        assert!(engine.embeds_pairs_in_one_batch(), "VGG-Face takes a batch");
        let alone = photos.each_ref().map(|photo| {
            engine
                .analyze_bytes(photo, facelift::face::Which::Best)
                .expect("a face")
                .faces
                .remove(0)
        });
        let (first, second) = engine.analyze_pair(&photos[0], &photos[1]);
        for (pair, alone) in [first, second].into_iter().zip(&alone) {
            let face = &pair.expect("a face").faces[0];
            assert_eq!(face.bbox, alone.bbox, "{precision:?}: the same face found");
            let agreement = facelift::face::cosine(&face.embedding, &alone.embedding);
            assert!(agreement >= 0.99999, "{precision:?}: {agreement}");
        }
    }
    assert!(
        !Engine::load(
            &ModelSet::default_set(),
            &repo_root().join("models"),
            EngineConfig::default()
        )
        .expect("default engine")
        .embeds_pairs_in_one_batch(),
        "the default model's input has a fixed batch of one"
    );
}

/// The two kinds of CPU machines of this kind have: Intel with VNNI, AMD EPYC with AVX2.
fn cpu_kinds() -> [(&'static str, CpuFeatures); 2] {
    [
        ("Intel with VNNI", CpuFeatures::XEON_VNNI),
        ("AMD EPYC, AVX2 only", CpuFeatures::EPYC_AVX2),
    ]
}

#[test]
fn the_int8_model_records_the_cpu_it_was_checked_on_and_runs_only_where_that_holds() {
    if !int8_model_or_skip(
        "the_int8_model_records_the_cpu_it_was_checked_on_and_runs_only_where_that_holds",
        "the whole test",
    ) {
        return;
    }
    let model = repo_root().join(".cache/vggface/vgg-face-int8.onnx");
    let report = Int8Report::read(&model.with_extension("json")).expect("report");
    let here = CpuFeatures::detect();
    assert_eq!(
        report.int8_format,
        here.recommended_int8_format(),
        "this CPU's format"
    );
    let validated = report.validated_on.as_ref().expect("validated_on");
    assert_eq!(validated.int8_kernels, here.int8_kernels());
    assert_eq!(validated.features, here.names());
    check_int8_model(&model, &here).expect("runs where it was checked");
    for (kind, cpu) in cpu_kinds() {
        let verdict = check_int8_model(&model, &cpu);
        let expected_to_run = report.int8_format == Int8Format::U8u8
            || cpu.int8_kernels() != Int8Kernels::SaturatingU8s8
            || validated.int8_kernels == Int8Kernels::SaturatingU8s8;
        assert_eq!(verdict.is_ok(), expected_to_run, "{kind}: {verdict:?}");
        if let Err(refusal) = verdict {
            assert!(
                refusal
                    .to_string()
                    .contains("Run scripts/quantize-vggface on this machine"),
                "{refusal}"
            );
        }
    }
}

#[test]
fn an_int8_model_without_its_report_is_refused_with_how_to_make_one() {
    if !int8_model_or_skip(
        "an_int8_model_without_its_report_is_refused_with_how_to_make_one",
        "the whole test",
    ) {
        return;
    }
    let cache = repo_root().join(".cache/vggface");
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["vgg-face-int8.onnx", "vgg-face-int8.onnx.data"] {
        std::os::unix::fs::symlink(cache.join(name), dir.path().join(name)).expect("link");
    }
    for name in ["fr_detect.onnx", "fr_landmark.onnx"] {
        std::os::unix::fs::symlink(repo_root().join("models").join(name), dir.path().join(name))
            .expect("link");
    }
    let refused = Engine::load(
        &ModelSet::vgg_face(VggOutput::Fc8, Precision::Int8),
        dir.path(),
        EngineConfig::default(),
    )
    .err()
    .expect("refused without its report");
    let message = refused.to_string();
    assert!(
        message.contains("vgg-face-int8.json") && message.contains("scripts/quantize-vggface"),
        "{message}"
    );
}

/// `facelift ARGS` on an emulated AMD EPYC (Rome: AVX2, no AVX-512, no VNNI) under qemu-user,
/// whose CPUID is the one ONNX Runtime and facelift read: the other kind of machine, on any.
fn on_emulated_epyc(args: &[&OsStr]) -> std::process::Output {
    Command::new("qemu-x86_64")
        .args(["-cpu", "EPYC-Rome"])
        .arg(env!("CARGO_BIN_EXE_facelift"))
        .args(args)
        .current_dir(repo_root())
        .env("FACELIFT_LOG", "error")
        .output()
        .expect("qemu-x86_64 runs (scripts/setup --for-tests installs Debian's qemu-user)")
}

#[test]
fn on_an_emulated_avx2_cpu_facelift_picks_u8u8_and_runs_only_an_int8_model_checked_for_it() {
    let cpu = on_emulated_epyc(&["cpu".as_ref(), "--json".as_ref()]);
    let value: serde_json::Value = serde_json::from_slice(&cpu.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&cpu.stderr));
    });
    assert_eq!(value["features"], serde_json::json!(["avx2"]), "{value}");
    assert_eq!(value["int8_kernels"], "saturating-u8s8");
    assert_eq!(value["int8_format"], "u8u8");

    if !int8_model_or_skip(
        "on_an_emulated_avx2_cpu_facelift_picks_u8u8_and_runs_only_an_int8_model_checked_for_it",
        "running the int8 model on the emulated CPU",
    ) {
        return;
    }
    let dir = models_dir();
    let photo = shared().join("data/deepface-faces/img1.jpg");
    let args: Vec<&OsStr> = [
        "--model",
        "vgg-face",
        "--precision",
        "int8",
        "--threads",
        "2",
        "--models-dir",
    ]
    .iter()
    .map(OsStr::new)
    .chain([dir.path().as_os_str()])
    .chain(["represent", "--no-detect", "--json"].map(OsStr::new))
    .chain([photo.as_os_str()])
    .collect();
    let emulated = on_emulated_epyc(&args);
    let report =
        Int8Report::read(&repo_root().join(".cache/vggface/vgg-face-int8.json")).expect("report");
    let checked_with = report.validated_on.as_ref().map(|v| v.int8_kernels);
    if report.int8_format.saturates_without_vnni()
        && checked_with != Some(Int8Kernels::SaturatingU8s8)
    {
        // made on a VNNI machine: refused there, before any pixel is embedded
        let stderr = String::from_utf8_lossy(&emulated.stderr);
        assert!(!emulated.status.success(), "{stderr}");
        assert!(
            stderr.contains("u8s8 kernels saturate")
                && stderr.contains("Run scripts/quantize-vggface on this machine"),
            "{stderr}"
        );
    } else {
        // made for such a CPU: it runs there and agrees with fp32 (on this machine) as checked
        assert!(
            emulated.status.success(),
            "{}",
            String::from_utf8_lossy(&emulated.stderr)
        );
        let embedding = |value: &serde_json::Value| -> Vec<f32> {
            value["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect()
        };
        let int8: serde_json::Value = serde_json::from_slice(&emulated.stdout).expect("json");
        let fp32 = vgg_facelift(
            dir.path(),
            &["represent", "--no-detect", "--json"],
            &[&photo],
        );
        let agreement = facelift::face::cosine(&embedding(&int8), &embedding(&fp32));
        println!("int8 on the emulated EPYC against fp32: {agreement:.5}");
        assert!(agreement >= 0.999, "{agreement}");
    }
}
