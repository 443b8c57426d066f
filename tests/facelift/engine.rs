//! The engine on real photos.

use facelift::face::{FaceAnalysis, FaceError, Which, cosine};

use crate::helpers::{jpeg_with_exif_rotation, png_header_only, pool, read_photo};

fn analyze(bytes: Vec<u8>, which: Which) -> Result<FaceAnalysis, FaceError> {
    pool()
        .run_blocking(move |engine| engine.analyze_bytes(&bytes, which))
        .expect("engine running")
}

fn best_embedding(name: &str) -> Vec<f32> {
    let analysis = analyze(read_photo(name), Which::Best).unwrap_or_else(|e| panic!("{name}: {e}"));
    analysis.faces[0].embedding.clone()
}

#[test]
fn the_same_person_verifies_and_different_people_do_not() {
    let threshold = pool().threshold();
    let same = cosine(&best_embedding("img1.jpg"), &best_embedding("img2.jpg"));
    assert!(same >= threshold, "img1/img2 are one person: {same}");
    let different = cosine(&best_embedding("img1.jpg"), &best_embedding("img3.jpg"));
    assert!(
        different < threshold,
        "img1/img3 are two people: {different}"
    );
}

#[test]
fn embeddings_are_unit_length_and_of_the_manifest_size() {
    let embedding = best_embedding("img13.jpg");
    assert_eq!(embedding.len(), pool().models().embedder.embedding_size);
    let norm: f32 = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[test]
fn a_photo_with_two_faces_reports_two_and_embeds_both() {
    let all = analyze(read_photo("couple.jpg"), Which::All).expect("faces");
    assert_eq!(all.faces_seen, 2);
    assert_eq!(all.faces.len(), 2);
    // two different people, and both boxes inside the photo
    assert!(cosine(&all.faces[0].embedding, &all.faces[1].embedding) < pool().threshold());
    let (w, h) = image::image_dimensions(crate::helpers::photo("couple.jpg")).expect("size");
    for face in &all.faces {
        let [x1, y1, x2, y2] = face.bbox;
        assert!(
            0.0 <= x1 && x1 < x2 && x2 <= w as f32 + 1.0,
            "{:?}",
            face.bbox
        );
        assert!(
            0.0 <= y1 && y1 < y2 && y2 <= h as f32 + 1.0,
            "{:?}",
            face.bbox
        );
    }
    let best = analyze(read_photo("couple.jpg"), Which::Best).expect("face");
    assert_eq!(best.faces.len(), 1, "the best face only");
    assert_eq!(best.faces_seen, 2, "but it says how many it saw");
    // where exactly one face is wanted, two are an error that says so
    match analyze(read_photo("couple.jpg"), Which::Single) {
        Err(FaceError::SeveralFaces { count }) => assert_eq!(count, 2),
        other => panic!("expected SeveralFaces, got {other:?}"),
    }
    let single = analyze(read_photo("img13.jpg"), Which::Single).expect("one face");
    assert_eq!(single.faces_seen, 1);
}

#[test]
fn an_exif_rotated_photo_is_turned_upright_before_detection() {
    let upright = image::open(crate::helpers::photo("img1.jpg"))
        .expect("photo")
        .into_rgb8();
    let rotated = jpeg_with_exif_rotation(&upright);
    let analysis = analyze(rotated, Which::Best).expect("a face in the rotated photo");
    let face = &analysis.faces[0];
    // the box is in upright coordinates: inside the upright width and height
    assert!(
        face.bbox[2] <= upright.width() as f32 + 1.0
            && face.bbox[3] <= upright.height() as f32 + 1.0
    );
    let similarity = cosine(&face.embedding, &best_embedding("img1.jpg"));
    assert!(
        similarity > 0.9,
        "the same photo, upright again: {similarity}"
    );
}

#[test]
fn bad_images_get_their_own_errors() {
    assert!(matches!(
        analyze(Vec::new(), Which::Best),
        Err(FaceError::Empty)
    ));
    let text = b"GET / HTTP/1.1\r\nthis is a text file, not a picture\r\n".to_vec();
    assert!(matches!(
        analyze(text, Which::Best),
        Err(FaceError::NotAnImage)
    ));
    let jpeg = read_photo("img1.jpg");
    let truncated = jpeg[..jpeg.len() / 2].to_vec();
    assert!(matches!(
        analyze(truncated, Which::Best),
        Err(FaceError::Corrupt(_))
    ));
}

#[test]
fn an_oversized_image_is_refused_without_being_decoded() {
    match analyze(png_header_only(50_000, 50_000), Which::Best) {
        Err(FaceError::TooLarge {
            width,
            height,
            limit,
        }) => {
            assert_eq!((width, height), (50_000, 50_000));
            assert_eq!(limit, 40_000_000);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_picture_without_a_face_says_so_and_a_tiny_face_is_too_small() {
    let wall = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x / 3) as u8, (y / 2) as u8, 90])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    wall.write_to(&mut png, image::ImageFormat::Png)
        .expect("encode");
    assert!(matches!(
        analyze(png.into_inner(), Which::Best),
        Err(FaceError::NoFace)
    ));

    // img1 shrunk step by step in a small frame (which the detector sees at full resolution):
    // once its face is under the 40-pixel minimum it must be refused as too small, never used
    let photo = image::open(crate::helpers::photo("img1.jpg"))
        .expect("photo")
        .into_rgb8();
    let mut too_small = 0;
    for height in [120, 90, 70, 55, 45, 38, 32, 26] {
        let factor = height as f32 / photo.height() as f32;
        let w = (photo.width() as f32 * factor) as u32;
        let small =
            image::imageops::resize(&photo, w, height, image::imageops::FilterType::Triangle);
        let mut frame = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
        image::imageops::overlay(
            &mut frame,
            &small,
            i64::from((320 - w) / 2),
            i64::from((240 - height) / 2),
        );
        let mut jpeg = std::io::Cursor::new(Vec::new());
        frame
            .write_to(&mut jpeg, image::ImageFormat::Jpeg)
            .expect("encode");
        match analyze(jpeg.into_inner(), Which::Best) {
            Ok(analysis) => {
                let [_, y1, _, y2] = analysis.faces[0].bbox;
                assert!(y2 - y1 >= 40.0, "a {}-pixel face was used", y2 - y1);
            }
            Err(FaceError::FaceTooSmall { size, min }) => {
                assert!(size < min, "{size} < {min}");
                too_small += 1;
            }
            Err(FaceError::NoFace) => {}
            Err(other) => panic!("photo {height} px high: {other}"),
        }
    }
    assert!(too_small > 0, "some small face was refused as too small");
}

#[test]
fn liveness_when_enabled_scores_a_real_photo_live_and_a_smeared_copy_lower() {
    let mut settings = crate::helpers::settings();
    settings.engine.liveness = true;
    let models = facelift::face::ModelSet::default_set();
    let mut engine = facelift::face::Engine::load(&models, &settings.models_dir, settings.engine)
        .expect("engine with liveness");
    let live = |engine: &mut facelift::face::Engine, bytes: &[u8]| {
        engine
            .analyze_bytes(bytes, Which::Best)
            .expect("face")
            .faces[0]
            .liveness
            .expect("liveness is on")
    };
    let real = live(&mut engine, &read_photo("img13.jpg"));
    assert!(real >= 0.5, "a real photo: {real}");
    // the same photo badly blurred, as a print or a replay on a poor screen looks
    let photo = image::open(crate::helpers::photo("img13.jpg")).expect("photo");
    let smeared = image::imageops::blur(&photo.to_rgb8(), 6.0);
    let mut jpeg = std::io::Cursor::new(Vec::new());
    smeared
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .expect("encode");
    let fake = live(&mut engine, &jpeg.into_inner());
    assert!(fake < real, "blur lowers liveness: {fake} vs {real}");
}

#[test]
fn a_pair_on_one_engine_gives_each_photo_its_own_result() {
    let (a, b) = (read_photo("img1.jpg"), read_photo("img2.jpg"));
    let (first, second) = pool()
        .run_blocking({
            let (a, b) = (a.clone(), b.clone());
            move |engine| engine.analyze_pair(&a, &b)
        })
        .expect("engine running");
    let (first, second) = (first.expect("img1"), second.expect("img2"));
    assert_eq!(first.faces[0].embedding, best_embedding("img1.jpg"));
    assert_eq!(second.faces[0].embedding, best_embedding("img2.jpg"));

    // a bad second photo fails on its own; the first is still analysed
    let (first, second) = pool()
        .run_blocking(move |engine| engine.analyze_pair(&a, b"not an image"))
        .expect("engine running");
    assert!(first.is_ok());
    assert!(matches!(second, Err(FaceError::NotAnImage)), "{second:?}");
}
