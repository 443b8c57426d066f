//! 68-point landmarks (`fr_landmark.onnx`) and the five points alignment needs.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use ndarray::Array4;

use super::detect::Detection;

pub const INPUT_SIZE: u32 = 64;
pub type Point = [f32; 2];

/// The pixel rectangle the landmark model looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Crop {
    pub fn rect(&self) -> [u32; 4] {
        [self.x, self.y, self.width, self.height]
    }

    /// This rectangle grown by `fraction` of its size on every side, clipped to the image.
    pub fn grown(&self, fraction: f32, image_size: (u32, u32)) -> [u32; 4] {
        let dx = (self.width as f32 * fraction) as u32;
        let dy = (self.height as f32 * fraction) as u32;
        let (x, y) = (self.x.saturating_sub(dx), self.y.saturating_sub(dy));
        let right = (self.x + self.width + dx).min(image_size.0);
        let bottom = (self.y + self.height + dy).min(image_size.1);
        [x, y, right - x, bottom - y]
    }
}

/// Squares the face box around its centre (side = box height), clipped to the image.
pub fn landmark_crop(face: &Detection, image_size: (u32, u32)) -> Option<Crop> {
    let [x1, y1, x2, y2] = face.bbox;
    let side = y2 - y1;
    let cx = (x1 + x2) / 2.0;
    let clip = |v: f32, max: u32| v.clamp(0.0, max as f32) as u32;
    let (left, top) = (clip(cx - side / 2.0, image_size.0), clip(y1, image_size.1));
    let (right, bottom) = (clip(cx + side / 2.0, image_size.0), clip(y2, image_size.1));
    (right > left && bottom > top).then(|| Crop {
        x: left,
        y: top,
        width: right - left,
        height: bottom - top,
    })
}

/// The model's input: the crop resized to 64x64, grey (BT.601), divided by 256, [1, 1, 64, 64].
pub fn landmark_input(image: &RgbImage, crop: Crop) -> Array4<f32> {
    let mut small = RgbImage::new(INPUT_SIZE, INPUT_SIZE);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear))
        .crop(
            f64::from(crop.x),
            f64::from(crop.y),
            f64::from(crop.width),
            f64::from(crop.height),
        );
    let n = INPUT_SIZE as usize;
    let mut input = Array4::<f32>::zeros((1, 1, n, n));
    if Resizer::new().resize(image, &mut small, &options).is_err() {
        return input;
    }
    for (i, p) in small.pixels().enumerate() {
        let grey = 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
        input[[0, 0, i / n, i % n]] = grey / 256.0;
    }
    input
}

/// Maps the model's 136 outputs (relative to the crop) to 68 image points.
pub fn points_from_output(output: &[f32], crop: Crop) -> Vec<Point> {
    output
        .chunks_exact(2)
        .map(|p| {
            [
                p[0] * crop.width as f32 + crop.x as f32,
                p[1] * crop.height as f32 + crop.y as f32,
            ]
        })
        .collect()
}

/// Left eye centre, right eye centre, nose tip, left and right mouth corners (0-based iBUG 68).
pub fn five_points(points: &[Point]) -> Option<[Point; 5]> {
    if points.len() < 68 {
        return None;
    }
    let mean = |range: std::ops::Range<usize>| {
        let n = range.len() as f32;
        let (sx, sy) = points[range]
            .iter()
            .fold((0.0, 0.0), |(sx, sy), p| (sx + p[0], sy + p[1]));
        [sx / n, sy / n]
    };
    Some([
        mean(36..42),
        mean(42..48),
        points[30],
        points[48],
        points[54],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crop_is_square_centred_and_clipped() {
        let face = Detection {
            bbox: [40.0, 10.0, 80.0, 70.0],
            score: 0.9,
        };
        assert_eq!(
            landmark_crop(&face, (200, 200)),
            Some(Crop {
                x: 30,
                y: 10,
                width: 60,
                height: 60
            })
        );
        // at the image's left edge the square is cut
        let edge = Detection {
            bbox: [0.0, 10.0, 30.0, 70.0],
            score: 0.9,
        };
        assert_eq!(
            landmark_crop(&edge, (200, 200)),
            Some(Crop {
                x: 0,
                y: 10,
                width: 45,
                height: 60
            })
        );
    }

    #[test]
    fn five_points_average_the_eyes() {
        let points: Vec<Point> = (0..68).map(|i| [i as f32, 2.0 * i as f32]).collect();
        let five = five_points(&points).expect("68 points");
        assert_eq!(five[0], [38.5, 77.0]);
        assert_eq!(five[1], [44.5, 89.0]);
        assert_eq!(five[2], [30.0, 60.0]);
        assert_eq!(five[3], [48.0, 96.0]);
        assert_eq!(five[4], [54.0, 108.0]);
    }
}
