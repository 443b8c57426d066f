use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use facelift::Settings;
use facelift::face::EnginePool;

/// Runs the `facelift` binary from the repository root and returns the JSON it printed; a
/// failure or non-JSON output fails the test with facelift's own words.
pub fn facelift_json<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_facelift"))
        .current_dir(repo_root())
        .args(args)
        .env("FACELIFT_LOG", "error")
        .output()
        .expect("run facelift");
    assert!(
        output.status.success(),
        "facelift {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "facelift {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared data folder: `$FACELIFT_SHARED`, else `../shared` beside the repository.
pub fn shared() -> PathBuf {
    std::env::var_os("FACELIFT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"))
}

pub fn faces_dir() -> PathBuf {
    shared().join("data/deepface-faces")
}

/// The photos of each person in the shared set, by `identities.csv`, in name order.
pub fn photos_by_person() -> Vec<(String, Vec<String>)> {
    let mut by_person: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut reader = csv::Reader::from_path(faces_dir().join("identities.csv")).expect("csv");
    for row in reader.records() {
        let row = row.expect("row");
        by_person
            .entry(row[1].to_string())
            .or_default()
            .push(row[0].to_string());
    }
    by_person.into_iter().collect()
}

pub fn photo(name: &str) -> PathBuf {
    faces_dir().join(name)
}

pub fn read_photo(name: &str) -> Vec<u8> {
    std::fs::read(photo(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// Settings pointing at the repository's models, with one engine thread (tests run in parallel).
/// Presentation attack detection is off: these log in with single photos. The PAD tests turn
/// it on.
pub fn settings() -> Settings {
    Settings {
        models_dir: repo_root().join("models"),
        workers: 1,
        engine: facelift::face::EngineConfig {
            threads: 1,
            ..Default::default()
        },
        pad: facelift::config::PadMode::Off,
        ..Settings::default()
    }
}

/// One engine pool shared by the tests of this binary (opening sessions takes a moment).
pub fn pool() -> &'static Arc<EnginePool> {
    static POOL: OnceLock<Arc<EnginePool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut settings = Settings {
            workers: 2,
            ..settings()
        };
        // as the server opens it for PAD: with the passive liveness score
        settings.engine.liveness = true;
        let pool = facelift::open_engine_pool(&settings)
            .expect("the models are in models/: run scripts/setup");
        Arc::new(pool)
    })
}

/// A gallery folder with the given people and photos (copied from the shared photos).
pub fn make_gallery(people: &[(&str, &[&str])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (person, photos) in people {
        let folder = dir.path().join(person);
        std::fs::create_dir_all(&folder).expect("mkdir");
        for name in *photos {
            std::fs::copy(photo(name), folder.join(name)).expect("copy photo");
        }
    }
    dir
}

/// A JPEG of `image` whose pixels are stored turned a quarter to the left, with the EXIF
/// orientation 6 that tells viewers to turn it back, as phones write them.
pub fn jpeg_with_exif_rotation(image: &image::RgbImage) -> Vec<u8> {
    let stored = image::imageops::rotate270(image);
    let mut jpeg = Cursor::new(Vec::new());
    stored
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .expect("encode");
    let jpeg = jpeg.into_inner();
    // APP1 "Exif": a big-endian TIFF header and one IFD entry, 0x0112 Orientation = 6.
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let length = u16::try_from(payload.len() + 2).expect("short segment");
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A PNG that declares `width` x `height` pixels but holds only a header and one tiny chunk:
/// decoding it would fail as corrupt, so a "too large" error proves it was refused first.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&u32::try_from(data.len()).expect("len").to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        png.extend_from_slice(&crc.finalize().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

/// A float32 `.npy` file: its shape and values (in C order).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let array: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let shape = array.shape().to_vec();
    (shape, array.iter().copied().collect())
}

/// Whether the int8 VGG-Face test model is in `.cache/vggface/`. `scripts/setup --for-tests`
/// leaves it out, with the reason in `.cache/vggface/int8-skipped`, when int8 falls short of the
/// agreement bar on this CPU (an optional speed-up). A test that needs it then says what it
/// skipped, on stderr and in `test-artifacts/skipped.txt` (which `scripts/test` prints at the
/// end), and checks the rest. Neither the model nor a reason fails the test.
pub fn int8_model_or_skip(test: &str, skipped: &str) -> bool {
    let cache = repo_root().join(".cache/vggface");
    if cache.join("vgg-face-int8.onnx.data").is_file() {
        return true;
    }
    let reason = std::fs::read_to_string(cache.join("int8-skipped")).unwrap_or_else(|_| {
        panic!(
            "no int8 VGG-Face test model in {} and no reason why: run scripts/setup --for-tests",
            cache.display()
        )
    });
    let line = format!("{test}: skipped {skipped}: {}", reason.trim());
    eprintln!("SKIPPED {line}");
    let artifacts = repo_root().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("test-artifacts");
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(artifacts.join("skipped.txt"))
        .expect("skipped.txt");
    writeln!(file, "{line}").expect("write skipped.txt");
    false
}

/// A URL on a new, empty schema of the PostgreSQL server `TEST_POSTGRES_URL` names
/// (`scripts/test` starts one). None without a server, after saying so, unless
/// `TEST_POSTGRES_REQUIRED` says there must be one.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(base) => {
            let schema = format!("it_{}", hex::encode(rand::random::<[u8; 6]>()));
            Some(facelift::store::Store::postgres_schema_url(&base, &schema).expect("schema"))
        }
        Err(_) if std::env::var_os("TEST_POSTGRES_REQUIRED").is_some() => {
            panic!("{test}: TEST_POSTGRES_REQUIRED is set but TEST_POSTGRES_URL is not")
        }
        Err(_) => {
            eprintln!("{test}: skipped, no TEST_POSTGRES_URL (scripts/test starts a server)");
            None
        }
    }
}

/// The wall clock in Unix seconds, as a device stamps its messages.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}
