//! Face detection with the Ultra-Light-Fast RFB-320 detector (`fr_detect.onnx`).
//!
//! The model's outputs are already decoded: face probabilities after softmax and corner-form
//! boxes normalised to [0, 1]; what is left is the threshold and non-maximum suppression.

use image::RgbImage;
use ndarray::Array4;

use super::{FaceError, resize};

pub const INPUT_WIDTH: u32 = 320;
pub const INPUT_HEIGHT: u32 = 240;
const MAX_CANDIDATES: usize = 750;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// x1, y1, x2, y2 in pixels of the image given to the detector
    pub bbox: [f32; 4],
    pub score: f32,
}

impl Detection {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }
    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }
}

/// Builds the detector's input: RGB, (x - 127) / 128, NCHW [1, 3, 240, 320].
pub fn detector_input(image: &RgbImage) -> Result<Array4<f32>, FaceError> {
    let small = resize::bilinear(image, INPUT_WIDTH, INPUT_HEIGHT)?;
    let (w, h) = (INPUT_WIDTH as usize, INPUT_HEIGHT as usize);
    Ok(Array4::from_shape_fn((1, 3, h, w), |(_, c, y, x)| {
        (f32::from(small.get_pixel(x as u32, y as u32)[c]) - 127.0) / 128.0
    }))
}

/// Turns raw outputs (`scores` [N, 2], `boxes` [N, 4]) into faces, best first.
pub fn decode_detections(
    scores: &[f32],
    boxes: &[f32],
    image_size: (u32, u32),
    min_score: f32,
    iou_threshold: f32,
) -> Vec<Detection> {
    let (w, h) = (image_size.0 as f32, image_size.1 as f32);
    let mut candidates: Vec<Detection> = scores
        .chunks_exact(2)
        .zip(boxes.chunks_exact(4))
        .filter(|(s, _)| s[1] >= min_score)
        .map(|(s, b)| Detection {
            bbox: [b[0] * w, b[1] * h, b[2] * w, b[3] * h],
            score: s[1],
        })
        .collect();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(MAX_CANDIDATES);
    non_maximum_suppression(candidates, iou_threshold)
}

/// Greedy NMS over candidates sorted by descending score.
fn non_maximum_suppression(sorted: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in sorted {
        if kept
            .iter()
            .all(|k| iou(&k.bbox, &candidate.bbox) <= iou_threshold)
        {
            kept.push(candidate);
        }
    }
    kept
}

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_boxes_collapse_to_the_best_and_far_ones_stay() {
        // three candidates: two overlapping faces (0.9 and 0.8) and one elsewhere (0.7)
        let scores = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.5, 0.5];
        let boxes = [
            0.10, 0.10, 0.30, 0.40, //
            0.11, 0.11, 0.31, 0.41, //
            0.60, 0.20, 0.80, 0.50, //
            0.00, 0.00, 0.10, 0.10,
        ];
        let faces = decode_detections(&scores, &boxes, (100, 200), 0.65, 0.4);
        assert_eq!(faces.len(), 2);
        assert_eq!(faces[0].score, 0.9);
        for (got, want) in faces[0].bbox.iter().zip([10.0, 20.0, 30.0, 80.0]) {
            assert!((got - want).abs() < 1e-4, "{:?}", faces[0].bbox);
        }
        assert_eq!(faces[1].score, 0.7);
    }

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }
}
