//! The enrolled gallery and its SQLite cache.

use facelift::face::Which;
use facelift::face::gallery::build;
use facelift::store::Store;

use crate::helpers::{make_gallery, photo, pool, read_photo};

#[test]
fn a_restart_reads_embeddings_back_and_a_changed_photo_is_embedded_again() {
    let gallery_dir = make_gallery(&[("ada", &["img1.jpg", "img2.jpg"]), ("bea", &["img3.jpg"])]);
    let data = tempfile::tempdir().expect("tempdir");
    let nothing = || {};

    let store = Store::open(data.path()).expect("store");
    let (gallery, report) = build(gallery_dir.path(), pool(), &store, &nothing).expect("build");
    assert_eq!(
        (
            report.people,
            report.photos,
            report.embedded,
            report.from_cache,
            report.hashed
        ),
        (2, 3, 3, 0, 3)
    );
    assert_eq!(gallery.template_count(), 3);
    drop(store);

    // a restart: same database, nothing to compute, and no photo even read
    let store = Store::open(data.path()).expect("reopen");
    let (again, report) = build(gallery_dir.path(), pool(), &store, &nothing).expect("build");
    assert_eq!(
        (report.embedded, report.from_cache, report.hashed),
        (0, 3, 0)
    );
    assert_eq!(
        again.people()[0].templates[0].embedding,
        gallery.people()[0].templates[0].embedding
    );

    // a photo gone from the gallery is forgotten by the photo list too
    assert_eq!(store.photo_files().expect("list").len(), 3);
    std::fs::remove_file(gallery_dir.path().join("ada/img2.jpg")).expect("remove");
    let (fewer, report) = build(gallery_dir.path(), pool(), &store, &nothing).expect("build");
    assert_eq!((fewer.template_count(), report.hashed), (2, 0));
    assert_eq!(store.photo_files().expect("list").len(), 2);

    // bea's photo replaced by another person's: only it is recomputed, and it now matches them
    std::fs::copy(photo("img13.jpg"), gallery_dir.path().join("bea/img3.jpg")).expect("replace");
    let (changed, report) = build(gallery_dir.path(), pool(), &store, &nothing).expect("build");
    assert_eq!(
        (report.embedded, report.from_cache, report.hashed),
        (1, 1, 1)
    );
    let probe = read_photo("img14.jpg"); // the same person as img13
    let analysis = pool()
        .run_blocking(move |engine| engine.analyze_bytes(&probe, Which::Best))
        .expect("engine")
        .expect("face");
    let result = changed.best_match(&analysis.faces[0].embedding, pool().threshold());
    assert_eq!(result.person.as_deref(), Some("bea"));
}

#[test]
fn a_person_is_recognised_by_their_best_template_with_the_runner_up_reported() {
    let gallery_dir = make_gallery(&[
        ("person01", &["img1.jpg", "img2.jpg", "img4.jpg"]),
        ("person02", &["img26.jpg", "img27.jpg"]),
        ("person05", &["img13.jpg", "img14.jpg"]),
    ]);
    let store = Store::open_in_memory().expect("store");
    let (gallery, _) = build(gallery_dir.path(), pool(), &store, &|| {}).expect("build");
    let threshold = pool().threshold();
    for (probe, expected) in [
        ("img5.jpg", Some("person01")),
        ("img28.jpg", Some("person02")),
        ("img38.jpg", None),
    ] {
        let bytes = read_photo(probe);
        let analysis = pool()
            .run_blocking(move |engine| engine.analyze_bytes(&bytes, Which::Best))
            .expect("engine")
            .expect("face");
        let result = gallery.best_match(&analysis.faces[0].embedding, threshold);
        assert_eq!(result.person.as_deref(), expected, "{probe}: {result:?}");
        let runner_up = result.runner_up.expect("three people enrolled");
        assert!(result.margin.expect("margin") >= 0.0);
        assert!(
            runner_up.similarity < threshold,
            "{probe}: nobody else matches"
        );
    }
}

#[test]
fn changed_preprocessing_recomputes_the_cached_templates_instead_of_mixing_them_in() {
    let gallery_dir = make_gallery(&[("ada", &["img1.jpg", "img2.jpg"])]);
    let store = Store::open_in_memory().expect("store");
    let (_, report) = build(gallery_dir.path(), pool(), &store, &|| {}).expect("build");
    assert_eq!((report.embedded, report.from_cache), (2, 0));

    // the same model with a stronger unsharp mask: its embeddings differ, so nothing is reused
    let mut settings = crate::helpers::settings();
    settings.engine.preprocess.unsharp_amount = 1.5;
    let sharper = facelift::open_engine_pool(&settings).expect("pool");
    assert_eq!(sharper.models().id, pool().models().id);
    let (gallery, report) = build(gallery_dir.path(), &sharper, &store, &|| {}).expect("build");
    assert_eq!((report.embedded, report.from_cache), (2, 0));
    let fresh = sharper
        .run_blocking(|engine| engine.analyze_bytes(&read_photo("img1.jpg"), Which::Best))
        .expect("engine")
        .expect("face");
    assert_eq!(
        gallery.people()[0].templates[0].embedding,
        fresh.faces[0].embedding,
        "the template is the one these settings compute"
    );
}

/// Real templates: each person of DeepFace's test photos enrolled from their first photo, among
/// 20,000 synthetic strangers; every other photo identified by the index gives what scoring
/// every template exactly gives (person, similarity, runner-up), so the index costs no accuracy.
#[test]
fn the_index_identifies_real_faces_as_scoring_every_template_does() {
    let by_person = crate::helpers::photos_by_person();
    let enrolled: Vec<(&str, Vec<&str>)> = by_person
        .iter()
        .map(|(person, photos)| (person.as_str(), vec![photos[0].as_str()]))
        .collect();
    let listing: Vec<(&str, &[&str])> = enrolled.iter().map(|(p, f)| (*p, f.as_slice())).collect();
    let dir = make_gallery(&listing);
    let store = Store::open_in_memory().expect("store");
    let (real, _) = build(dir.path(), pool(), &store, &|| {}).expect("build");

    let mut random = facelift::face::synthetic::Xorshift::new(0x2545_F491_4F6C_DD1D);
    let mut gallery = facelift::face::gallery::Gallery::new(real.model_id.clone(), Vec::new());
    for person in real.people() {
        for template in &person.templates {
            gallery.add_template(&person.name, template.clone());
        }
    }
    let dims = real.people()[0].templates[0].embedding.len();
    for i in 0..20_000 {
        let template = facelift::face::gallery::Template {
            file: format!("{i}.jpg").into(),
            embedding: random.unit(dims),
        };
        gallery.add_template(&format!("stranger{i:05}"), template);
    }

    let probes: Vec<(String, String)> = by_person
        .iter()
        .flat_map(|(person, photos)| photos[1..].iter().map(|p| (person.clone(), p.clone())))
        .collect();
    let threshold = pool().threshold();
    let mut right = 0;
    for (person, file) in &probes {
        let bytes = read_photo(file);
        let analysis = pool()
            .run_blocking(move |engine| engine.analyze_bytes(&bytes, Which::Best))
            .expect("engine")
            .expect("face");
        let probe = &analysis.faces[0].embedding;
        let indexed = gallery.best_match(probe, threshold);
        assert_eq!(
            indexed,
            gallery.best_match_exhaustive(probe, threshold),
            "{file}"
        );
        right += usize::from(indexed.person.as_deref() == Some(person.as_str()));
    }
    assert!(probes.len() >= 20, "{} probes", probes.len());
    assert!(
        right * 10 >= probes.len() * 8,
        "{right} of {} recognised among 20,000 strangers",
        probes.len()
    );
}
