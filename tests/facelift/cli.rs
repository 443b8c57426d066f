//! The `facelift` command as a person runs it, on the shared photos.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{facelift_json, faces_dir, make_gallery, photo, shared};

fn facelift(args: &[&str]) -> Value {
    facelift_json(&[&["--threads", "1", "--workers", "2"], args].concat())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn verify_prints_the_documented_json() {
    let (a, b) = (photo("img1.jpg"), photo("img2.jpg"));
    let same = facelift(&["verify", path(&a), path(&b), "--json"]);
    assert_eq!(same["verified"], true);
    assert_eq!(
        same["threshold"].as_f64().map(|t| (t * 100.0).round()),
        Some(50.0)
    );
    assert_eq!(same["model"], "faceplugin-0.0.1");
    assert_eq!(same["faces"], serde_json::json!([1, 1]));
    let c = photo("img3.jpg");
    let different = facelift(&["verify", path(&a), path(&c), "--json"]);
    assert_eq!(different["verified"], false);
    assert!(different["similarity"].as_f64() < same["similarity"].as_f64());
}

#[test]
fn identify_names_every_face_against_the_gallery() {
    let gallery = make_gallery(&[
        ("person01", &["img1.jpg", "img2.jpg"]),
        ("person07", &["img29.jpg", "img30.jpg"]),
    ]);
    let data = tempfile::tempdir().expect("tempdir");
    let (known, stranger, couple) = (photo("img4.jpg"), photo("img38.jpg"), photo("couple.jpg"));
    let rows = facelift(&[
        "identify",
        "--gallery",
        path(gallery.path()),
        "--data-dir",
        path(data.path()),
        path(&known),
        path(&stranger),
        path(&couple),
        "--json",
    ]);
    let rows = rows.as_array().expect("a list");
    let for_image = |p: &Path| {
        rows.iter()
            .filter(|r| r["image"] == path(p))
            .collect::<Vec<_>>()
    };
    let known_rows = for_image(&known);
    assert_eq!(known_rows.len(), 1);
    assert_eq!(known_rows[0]["person"], "person01");
    assert_eq!(known_rows[0]["box"].as_array().map(Vec::len), Some(4));
    assert_eq!(known_rows[0]["runner_up"]["person"], "person07");
    assert_eq!(for_image(&stranger)[0]["person"], Value::Null);
    assert_eq!(for_image(&couple).len(), 2, "one row per face");
}

#[test]
fn represent_gives_a_unit_embedding_and_enroll_caches() {
    let image = photo("img13.jpg");
    let value = facelift(&["represent", path(&image), "--json"]);
    let embedding: Vec<f64> = value["embedding"]
        .as_array()
        .expect("embedding")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(embedding.len(), 512);
    let norm = embedding.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);

    let gallery = make_gallery(&[("person05", &["img13.jpg", "img14.jpg"])]);
    let data = tempfile::tempdir().expect("tempdir");
    let args = [
        "enroll",
        path(gallery.path()),
        "--data-dir",
        path(data.path()),
        "--json",
    ];
    let first = facelift(&args);
    assert_eq!(
        (first["embedded"].as_u64(), first["from_cache"].as_u64()),
        (Some(2), Some(0))
    );
    let second = facelift(&args);
    assert_eq!(
        (second["embedded"].as_u64(), second["from_cache"].as_u64()),
        (Some(0), Some(2))
    );
}

/// The accuracy bars of the face engine issue, on DeepFace's own labelled pairs.
#[test]
fn eval_beats_deepface_on_its_pairs_and_makes_no_false_match() {
    let images = faces_dir();
    let plot = tempfile::Builder::new()
        .suffix(".svg")
        .tempfile()
        .expect("tempfile");
    let pivot = faces_dir().join("face-recognition-pivot.csv");
    let report = facelift(&[
        "eval",
        "--pairs",
        path(&pivot),
        "--images",
        path(&images),
        "--plot",
        path(plot.path()),
        "--json",
    ]);
    assert_eq!(report["pairs"], 280);
    assert_eq!(report["skipped_pairs"], 0, "every photo has its face found");
    let auc = report["auc"].as_f64().expect("auc");
    let accuracy = report["accuracy"].as_f64().expect("accuracy");
    assert!(auc >= 0.999, "AUC {auc} (DeepFace's VGG-Face: 0.9905)");
    assert!(
        accuracy >= 0.99,
        "accuracy {accuracy} (DeepFace's VGG-Face: 0.975 at best)"
    );
    let svg = std::fs::read_to_string(plot.path()).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
    assert!(svg.contains("false match rate") && svg.contains("AUC = "));

    let master = faces_dir().join("master.csv");
    let report = facelift(&[
        "eval",
        "--pairs",
        path(&master),
        "--images",
        path(&images),
        "--json",
    ]);
    assert_eq!(report["false_matches"], 0, "{report}");
    assert_eq!(report["impostor_pairs"], 262);
}

#[test]
fn every_shared_photo_has_a_face_found() {
    let mut photos: Vec<String> = std::fs::read_dir(faces_dir())
        .expect("photos")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .map(|p| path(&p).to_string())
        .collect();
    photos.sort();
    assert!(photos.len() >= 61);
    let empty = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "identify",
        "--gallery",
        path(empty.path()),
        "--data-dir",
        path(data.path()),
        "--json",
    ];
    args.extend(photos.iter().map(String::as_str));
    let rows = facelift(&args);
    let failures: Vec<&Value> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(failures.is_empty(), "photos without a face: {failures:?}");
}

#[test]
fn bench_reports_every_stage_next_to_raw_onnx_runtime() {
    let frame = shared().join("data/frames/webcam-720p-img4.jpg");
    let report = facelift(&[
        "bench",
        "--image",
        path(&frame),
        "--iterations",
        "3",
        "--json",
    ]);
    for stage in [
        "decode",
        "preprocess",
        "detect",
        "landmarks",
        "align",
        "embed",
        "match",
    ] {
        assert!(
            report["stages_ms"][stage].as_f64().is_some_and(|v| v > 0.0),
            "{stage}: {report}"
        );
    }
    for model in ["detect", "landmarks", "embed"] {
        assert!(
            report["raw_onnxruntime_ms"][model]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{model}"
        );
    }
    assert_eq!(report["size"], serde_json::json!([1280, 720]));
    assert!(report["overhead_ratio"].as_f64().is_some_and(|r| r > 0.0));
}

/// The newcomer's path: the first person, an administrator, from photos on the command line.
#[test]
fn person_add_enrols_the_first_admin_from_photos_and_keeps_only_single_face_photos() {
    let (gallery, data) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let places = [
        "--gallery",
        path(gallery.path()),
        "--data-dir",
        path(data.path()),
    ];
    let empty = facelift(&[&["person", "list", "--json"], &places[..]].concat());
    assert_eq!(empty, serde_json::json!([]), "no one enrolled at first");

    let (one, two, couple) = (photo("img1.jpg"), photo("img2.jpg"), photo("couple.jpg"));
    let not_a_photo = crate::helpers::repo_root().join("Cargo.toml");
    let added = facelift(
        &[
            &["person", "add", "alice", path(&one), path(&two)],
            &[path(&couple), path(&not_a_photo), "--admin", "--json"][..],
            &places[..],
        ]
        .concat(),
    );
    assert_eq!(added["photos"], 2, "{added}");
    assert_eq!(added["admin"], true);
    let why: Vec<&str> = added["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["why"].as_str().expect("why"))
        .collect();
    assert!(why[0].contains("2 faces found"), "{why:?}");
    assert!(why[1].contains("not an image"), "{why:?}");
    let saved = std::fs::read_dir(gallery.path().join("alice"))
        .expect("alice's folder")
        .count();
    assert_eq!(saved, 2, "only the single-face photos are kept");

    // embedded at once: the server starts from the cache
    let enroll = facelift(
        &[
            "enroll",
            path(gallery.path()),
            "--data-dir",
            path(data.path()),
            "--json",
        ][..],
    );
    assert_eq!(
        (enroll["embedded"].as_u64(), enroll["from_cache"].as_u64()),
        (Some(0), Some(2)),
        "{enroll}"
    );
    let store = facelift::store::Store::open(data.path()).expect("store");
    assert!(store.is_admin("alice").expect("admins"));
    let listed = facelift(&[&["person", "list", "--json"], &places[..]].concat());
    assert_eq!(
        listed,
        serde_json::json!([{"name": "alice", "photos": 2, "admin": true}])
    );

    // a photo with no single face enrols no one
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_facelift"))
        .current_dir(crate::helpers::repo_root())
        .args([&["person", "add", "bob", path(&couple)], &places[..]].concat())
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("nothing was enrolled"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!gallery.path().join("bob").exists());
}

/// A typo in the configuration must not pass silently: `serve` refuses to start and names the
/// key, whether it is in the file or in a `FACELIFT_*` variable.
#[test]
fn serve_refuses_a_configuration_with_an_unknown_key_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("facelift.toml");
    std::fs::write(
        &config,
        "bind = \"127.0.0.1:0\"\n[lift]\nhighest_flor = 9\n",
    )
    .expect("write");
    // answers whether it started serving (still running after a minute) and what it said
    let run = |config: &Path, env: &[(&str, &str)]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_facelift"))
            .current_dir(dir.path())
            .args(["--config", path(config), "serve"])
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run facelift");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let exited = loop {
            match child.try_wait().expect("wait") {
                Some(_) => break true,
                None if std::time::Instant::now() > deadline => break false,
                None => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        };
        if !exited {
            child.kill().expect("kill");
        }
        let output = child.wait_with_output().expect("output");
        (
            !exited,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (started, stderr) = run(&config, &[]);
    assert!(!started, "serve started with an unknown key");
    assert!(stderr.contains("highest_flor"), "{stderr}");

    std::fs::write(&config, "bind = \"127.0.0.1:0\"\n").expect("write");
    let (started, stderr) = run(&config, &[("FACELIFT_WEB__SESION_INACTIVITY_SECS", "60")]);
    assert!(!started, "serve started with an unknown variable");
    assert!(stderr.contains("sesion_inactivity_secs"), "{stderr}");
}
