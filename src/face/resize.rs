//! The two resizes of the pipeline: a fast bilinear one (SIMD, from `fast_image_resize`) for
//! the detector's and the default embedder's inputs, and OpenCV's `INTER_LINEAR` to the bit
//! (its fixed-point arithmetic) where DeepFace's VGG-Face input must be reproduced exactly.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::FaceError;

/// Bilinear resize, fast; close to OpenCV's but not bit-exact.
pub fn bilinear(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, FaceError> {
    let mut out = RgbImage::new(width, height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
    Resizer::new().resize(image, &mut out, &options)?;
    Ok(out)
}

const COEF_SCALE: f32 = 2048.0;

/// (first source index, weight of it, weight of the next) for each destination index.
fn taps(source: u32, destination: u32) -> Vec<(usize, i32, i32)> {
    let scale = f64::from(source) / f64::from(destination);
    (0..destination)
        .map(|d| {
            let position = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let mut first = position.floor() as i64;
            let mut fraction = position - first as f32;
            if first < 0 {
                first = 0;
                fraction = 0.0;
            }
            if first >= i64::from(source) - 1 {
                first = i64::from(source) - 1;
                fraction = 0.0;
            }
            let near = ((1.0 - fraction) * COEF_SCALE).round_ties_even() as i32;
            let far = (fraction * COEF_SCALE).round_ties_even() as i32;
            (first as usize, near, far)
        })
        .collect()
}

/// Resizes exactly as `cv2.resize(image, (width, height))` (bilinear) does on 8-bit input:
/// DeepFace's half-pixel centres, no anti-aliasing, 11-bit weights per axis, rounded the way
/// OpenCV's vector code rounds.
pub fn opencv_exact(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (source_width, source_height) = image.dimensions();
    let mut out = RgbImage::new(width, height);
    if source_width == 0 || source_height == 0 {
        return out;
    }
    let columns = taps(source_width, width);
    let rows = taps(source_height, height);
    let source = image.as_raw();
    let stride = source_width as usize * 3;
    // horizontal pass of one source row, in 11-bit fixed point
    let horizontal = |row: usize, into: &mut Vec<i32>| {
        into.clear();
        let line = &source[row * stride..(row + 1) * stride];
        for &(x, near, far) in &columns {
            for c in 0..3 {
                let a = i32::from(line[x * 3 + c]) * near;
                let b = if far != 0 {
                    i32::from(line[(x + 1) * 3 + c]) * far
                } else {
                    0
                };
                into.push(a + b);
            }
        }
    };
    let (mut upper, mut lower) = (Vec::new(), Vec::new());
    let output = out.as_mut();
    let out_stride = width as usize * 3;
    for (y, &(row, near, far)) in rows.iter().enumerate() {
        horizontal(row, &mut upper);
        if far != 0 {
            horizontal(row + 1, &mut lower);
        } else {
            lower.clone_from(&upper);
        }
        let (near, far) = (near as i16, far as i16);
        for (x, (&a, &b)) in upper.iter().zip(&lower).enumerate() {
            // OpenCV's vector path: (mulhi(a >> 4, near) + mulhi(b >> 4, far) + 2) >> 2
            let mul_high = |v: i32, w: i16| (i32::from((v >> 4) as i16) * i32::from(w)) >> 16;
            let value = (mul_high(a, near) + mul_high(b, far) + 2) >> 2;
            output[y * out_stride + x] = value.clamp(0, 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_halving_averages_pairs() {
        let image = RgbImage::from_fn(4, 2, |x, y| image::Rgb([(x * 40) as u8, (y * 90) as u8, 7]));
        assert_eq!(opencv_exact(&image, 4, 2), image);
        let half = opencv_exact(&image, 2, 1);
        // half-pixel centres: each output pixel is the mean of a 2x2 block
        assert_eq!(half.get_pixel(0, 0).0, [20, 45, 7]);
        assert_eq!(half.get_pixel(1, 0).0, [100, 45, 7]);
    }
}
