use std::time::Instant;
fn main() {
    let bytes = std::fs::read("../shared/data/frames/webcam-720p-img4.jpg").unwrap();
    let img = image::load_from_memory(&bytes).unwrap().into_rgb8();
    let small = facelift::face::preprocess::preprocess(img.clone(), &Default::default()).image;
    for _ in 0..5 {
        let t = Instant::now();
        let d = facelift::face::detect::detector_input(&small);
        let t1 = t.elapsed();
        let t = Instant::now();
        let x = facelift::face::decode::decode(&bytes, Default::default()).unwrap();
        let t2 = t.elapsed();
        let t = Instant::now();
        let p = facelift::face::preprocess::preprocess(x, &Default::default());
        let t3 = t.elapsed();
        println!("detector_input {t1:?} decode {t2:?} preprocess {t3:?} {} {}", d.len(), p.image.width());
    }
}
