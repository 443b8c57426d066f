//! `cargo bench --bench matching`: 1:N identification time per query at 1k, 10k, 100k and 1M
//! templates of 512 values (synthetic unit vectors, one template a person), on one core:
//! the int8 index with its exact re-scoring (`Gallery::best_match`) next to the previous
//! version's person-by-person f32 scan (`Gallery::best_match_exhaustive`), in one run; and the
//! memory each holds. Then the start of a server whose gallery of 100,000 templates (33,334
//! people, 3 photos each) is cached in the store: the first start, which hashes every photo,
//! the previous version's start (read and hash every photo, one query each), and this one's
//! (photos known by size and modification time, embeddings read in one query), each up to the
//! gallery with its index. The photos here are a few bytes each: a real one (50 KB or so) adds
//! about 0.17 ms of reading and hashing to the first start and to the previous version's, per
//! photo, and nothing to this one's. Needs no models. `MATCHING_SIZES=1000,10000` and `STARTUP_TEMPLATES=30000` pick other sizes.

use std::path::PathBuf;
use std::time::Instant;

use facelift::face::gallery::{EmbeddingCache, Gallery, Person, Template, assemble, load_cached};
use facelift::face::synthetic::Xorshift;
use facelift::store::Store;
use sha2::{Digest, Sha256};

const DIMS: usize = 512;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Milliseconds per query, the median over `queries` probes.
fn time_queries(queries: &[Vec<f32>], mut run: impl FnMut(&[f32])) -> f64 {
    let times = queries
        .iter()
        .map(|q| {
            let start = Instant::now();
            run(q);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("MATCHING_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000, 1_000_000]);
    let mut random = Xorshift::new(0x2545_F491_4F6C_DD1D);
    let mut rows = Vec::new();
    for &templates in &sizes {
        let people: Vec<Person> = (0..templates)
            .map(|i| Person {
                name: format!("person{i:07}"),
                templates: vec![Template {
                    file: PathBuf::new(),
                    embedding: random.unit(DIMS),
                }],
            })
            .collect();
        let build = Instant::now();
        let gallery = Gallery::new("synthetic", people);
        let build_ms = build.elapsed().as_secs_f64() * 1e3;
        // probes near an enrolled template (a login) and far from all (a stranger)
        let mut queries: Vec<Vec<f32>> = Vec::new();
        for i in 0..10 {
            let person = &gallery.people()[i * templates / 10];
            let probe = random.near(&person.templates[0].embedding, 0.03);
            queries.push(probe);
            queries.push(random.unit(DIMS));
        }
        for probe in &queries {
            assert_eq!(
                gallery.best_match(probe, 0.5),
                gallery.best_match_exhaustive(probe, 0.5),
                "the index must agree with the exact scan"
            );
        }
        let index_ms = time_queries(&queries, |q| drop(gallery.best_match(q, 0.5)));
        // the exact scan is slow at 1M; a few probes are enough for its median
        let few = &queries[..if templates >= 1_000_000 {
            4
        } else {
            queries.len()
        }];
        let exhaustive_ms = time_queries(few, |q| drop(gallery.best_match_exhaustive(q, 0.5)));
        let template_bytes = templates * DIMS * size_of::<f32>();
        let row = serde_json::json!({
            "templates": templates,
            "index_ms_per_query": index_ms,
            "exhaustive_ms_per_query": exhaustive_ms,
            "speedup": exhaustive_ms / index_ms,
            "index_build_ms": build_ms,
            "index_mb": gallery.index_bytes() as f64 / 1e6,
            "f32_templates_mb": template_bytes as f64 / 1e6,
        });
        println!(
            "{templates:>8} templates: index {index_ms:8.2} ms/query, exhaustive {exhaustive_ms:8.2} \
             ms/query ({:.1}x); index {:.0} MB beside {:.0} MB of f32 templates, built in {build_ms:.0} ms",
            exhaustive_ms / index_ms,
            gallery.index_bytes() as f64 / 1e6,
            template_bytes as f64 / 1e6,
        );
        rows.push(row);
    }
    let startup = startup(&mut random);
    println!(
        "{}",
        serde_json::json!({ "dims": DIMS, "sizes": rows, "startup": startup })
    );
}

fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// The three starts of a gallery cached in a store on disk.
fn startup(random: &mut Xorshift) -> serde_json::Value {
    let templates: usize = std::env::var("STARTUP_TEMPLATES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let folder = tempfile::tempdir().expect("tempdir");
    let gallery_dir = folder.path().join("enrolled_faces");
    let mut embeddings = Vec::new();
    for i in 0..templates {
        let person = gallery_dir.join(format!("person{:06}", i / 3));
        if i % 3 == 0 {
            std::fs::create_dir_all(&person).expect("mkdir");
        }
        // a photo's bytes do not matter here, only that each file is different
        let bytes = format!("photo {i} {}", random.next_centred()).into_bytes();
        std::fs::write(person.join(format!("{i}.jpg")), &bytes).expect("write");
        embeddings.push((hex::encode(Sha256::digest(&bytes)), random.unit(DIMS)));
    }
    let store = Store::open(&folder.path().join("data")).expect("store");
    let key = "synthetic";
    store.cache_embeddings(key, &embeddings).expect("cache");

    let start = Instant::now();
    let first = load_cached(&gallery_dir, &store, key).expect("load");
    let people = first.people.clone();
    drop(assemble(key.into(), first.people, first.embeddings));
    let first_s = seconds_since(start);
    assert_eq!(first.report.hashed, templates);

    // the previous version: every photo read, hashed and looked up on its own
    let start = Instant::now();
    let mut found = std::collections::BTreeMap::new();
    for path in people.values().flatten() {
        let bytes = std::fs::read(path).expect("read");
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(embedding) = EmbeddingCache::get(&store, key, &sha256) {
            found.insert(path.clone(), embedding);
        }
    }
    assert_eq!(found.len(), templates);
    drop(assemble(key.into(), people, found));
    let previous_s = seconds_since(start);

    let start = Instant::now();
    let read_embeddings = store.cached_embeddings(key).expect("read").len();
    let embeddings_s = seconds_since(start);
    let start = Instant::now();
    let read_stamps = store.photo_files().expect("read").len();
    let stamps_s = seconds_since(start);
    let start = Instant::now();
    let listed = facelift::face::gallery::scan(&gallery_dir)
        .expect("scan")
        .len();
    let listing_s = seconds_since(start);
    assert_eq!(listed, templates.div_ceil(3));
    assert_eq!((read_embeddings, read_stamps), (templates, templates));

    let start = Instant::now();
    let loaded = load_cached(&gallery_dir, &store, key).expect("load");
    let gallery = assemble(key.into(), loaded.people, loaded.embeddings);
    let now_s = seconds_since(start);
    assert_eq!(
        (loaded.report.hashed, gallery.template_count()),
        (0, templates)
    );
    println!(
        "start-up, {templates} cached templates: first start (hashing every photo) {first_s:.2} s; \
         previous version {previous_s:.2} s; now {now_s:.2} s with the index ({:.1}x), of which \
         reading the embeddings {embeddings_s:.2} s, the photo list {stamps_s:.2} s, \
         listing the folders {listing_s:.2} s",
        previous_s / now_s
    );
    serde_json::json!({
        "templates": templates,
        "first_start_s": first_s,
        "previous_version_s": previous_s,
        "now_s": now_s,
        "read_embeddings_s": embeddings_s,
        "read_photo_list_s": stamps_s,
        "list_folders_s": listing_s,
    })
}
