//! The preprocessing the seed applied to every camera frame, kept configurable and applied the
//! same way to enrollment photos and login frames so that both land in the same space.

use std::borrow::Cow;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preprocess {
    /// Images whose longer side exceeds this are scaled down to it (0 keeps the size).
    pub max_side: u32,
    /// Flip left-right, as a selfie preview shows it.
    pub mirror: bool,
    /// Unsharp mask strength: sharpened = image + amount * (image - blur); 0 turns it off.
    pub unsharp_amount: f32,
    /// Gaussian radius (sigma, pixels) of the unsharp mask's blur.
    pub unsharp_sigma: f32,
    /// Differences below this (0-255) are left alone, so flat skin noise is not amplified.
    pub unsharp_threshold: u8,
}

impl Default for Preprocess {
    fn default() -> Self {
        Self {
            max_side: 640,
            mirror: false,
            unsharp_amount: 0.5,
            unsharp_sigma: 1.0,
            unsharp_threshold: 2,
        }
    }
}

/// A preprocessed image and how to map its coordinates back to the original.
pub struct Prepared {
    pub image: RgbImage,
    /// original pixels per prepared pixel
    pub scale: f32,
    pub mirrored: bool,
    pub original_size: (u32, u32),
}

impl Prepared {
    /// Maps a box from prepared coordinates to the original image.
    pub fn to_original(&self, [x1, y1, x2, y2]: [f32; 4]) -> [f32; 4] {
        let (x1, x2) = if self.mirrored {
            let w = self.image.width() as f32;
            (w - x2, w - x1)
        } else {
            (x1, x2)
        };
        [x1, y1, x2, y2].map(|v| v * self.scale)
    }
}

/// Resizes and mirrors. The unsharp mask is applied later, by [`sharpened_region`], to the
/// parts of the frame the landmark and embedding models read: sharpening all of a 720p frame
/// cost more than the models themselves, and the detector sees the frame at 320x240, where a
/// one-pixel mask is averaged away.
pub fn preprocess(image: RgbImage, settings: &Preprocess) -> Prepared {
    let original_size = image.dimensions();
    let (mut image, scale) = shrink_to_max_side(image, settings.max_side);
    if settings.mirror {
        image::imageops::flip_horizontal_in_place(&mut image);
    }
    Prepared {
        image,
        scale,
        mirrored: settings.mirror,
        original_size,
    }
}

fn shrink_to_max_side(image: RgbImage, max_side: u32) -> (RgbImage, f32) {
    let (w, h) = image.dimensions();
    let longer = w.max(h);
    if max_side == 0 || longer <= max_side {
        return (image, 1.0);
    }
    let scale = longer as f32 / max_side as f32;
    let new_w = ((w as f32 / scale).round() as u32).max(1);
    let new_h = ((h as f32 / scale).round() as u32).max(1);
    let mut out = RgbImage::new(new_w, new_h);
    // Convolution (area-aware) filtering: a plain bilinear sample would alias fine detail.
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    match Resizer::new().resize(&image, &mut out, &options) {
        Ok(()) => (out, w as f32 / new_w as f32),
        // Both images are RGB8 and non-empty, so this cannot fail; keep the original if it does.
        Err(_) => (image, 1.0),
    }
}

/// A part of a frame, with its top-left corner in frame coordinates.
pub struct Region<'a> {
    pub image: Cow<'a, RgbImage>,
    pub x: u32,
    pub y: u32,
    /// `[x, y, width, height]` in frame coordinates where the pixels are exact
    pub exact: [u32; 4],
}

impl Region<'_> {
    /// True when every pixel of `rect` (frame coordinates) is exact here.
    pub fn covers(&self, rect: [u32; 4]) -> bool {
        let [x, y, w, h] = self.exact;
        rect[0] >= x && rect[1] >= y && rect[0] + rect[2] <= x + w && rect[1] + rect[3] <= y + h
    }
}

/// The rectangle `[x, y, width, height]` of `frame` with the unsharp mask applied, giving
/// exactly the pixels that sharpening the whole frame would give there: the region is cut with
/// a margin of the blur's reach, so its own edges do not change the pixels inside. Without a
/// mask the frame itself is returned, uncopied.
pub fn sharpened_region<'a>(
    frame: &'a RgbImage,
    rect: [u32; 4],
    settings: &Preprocess,
) -> Region<'a> {
    if settings.unsharp_amount <= 0.0 {
        return Region {
            image: Cow::Borrowed(frame),
            x: 0,
            y: 0,
            exact: [0, 0, frame.width(), frame.height()],
        };
    }
    let margin = blur_radius(settings.unsharp_sigma) as u32;
    let [x, y, w, h] = rect;
    let left = x
        .saturating_sub(margin)
        .min(frame.width().saturating_sub(1));
    let top = y
        .saturating_sub(margin)
        .min(frame.height().saturating_sub(1));
    let right = x
        .saturating_add(w)
        .saturating_add(margin)
        .min(frame.width());
    let bottom = y
        .saturating_add(h)
        .saturating_add(margin)
        .min(frame.height());
    let cut = image::imageops::crop_imm(
        frame,
        left,
        top,
        right.saturating_sub(left),
        bottom.saturating_sub(top),
    )
    .to_image();
    Region {
        image: Cow::Owned(unsharp_mask(
            &cut,
            settings.unsharp_sigma,
            settings.unsharp_amount,
            settings.unsharp_threshold,
        )),
        x: left,
        y: top,
        exact: [
            x,
            y,
            w.min(frame.width().saturating_sub(x)),
            h.min(frame.height().saturating_sub(y)),
        ],
    }
}

fn blur_radius(sigma: f32) -> usize {
    ((3.0 * sigma).ceil() as usize).clamp(1, 32)
}

/// Classic unsharp mask: sharpened = image + amount * (image - gaussian blur), per channel;
/// `amount` is used in steps of 1/16, up to 7.9.
pub fn unsharp_mask(image: &RgbImage, sigma: f32, amount: f32, threshold: u8) -> RgbImage {
    let blurred = gaussian_blur(image, sigma);
    let mut out = image.clone();
    let threshold = i16::from(threshold);
    // amount in sixteenths keeps the arithmetic in 16-bit lanes (255 * 127 fits), which vectorise
    let gain = (amount * 16.0).round().clamp(0.0, 127.0) as i16;
    for (dst, blur) in out.as_mut().iter_mut().zip(blurred.as_raw()) {
        let diff = i16::from(*dst) - i16::from(*blur);
        let delta = (diff * gain + 8) >> 4;
        let delta = if diff.abs() >= threshold { delta } else { 0 };
        *dst = (i16::from(*dst) + delta).clamp(0, 255) as u8;
    }
    out
}

/// Separable gaussian blur with 8-bit fixed-point weights and replicated borders. Each pass is a
/// sum of shifted contiguous slices in 16-bit lanes, which the compiler turns into SIMD even for
/// baseline x86-64: many times faster than `image::imageops::fast_blur` on a 720p frame.
pub fn gaussian_blur(image: &RgbImage, sigma: f32) -> RgbImage {
    const SHIFT: u32 = 8;
    let (width, height) = (image.width() as usize, image.height() as usize);
    if sigma <= 0.0 || width == 0 || height == 0 {
        return image.clone();
    }
    let radius = blur_radius(sigma);
    let weights: Vec<f32> = (0..=2 * radius)
        .map(|i| (-((i as f32 - radius as f32).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let mut kernel: Vec<u16> = weights
        .iter()
        .map(|w| (w / total * f32::from(1u16 << SHIFT)).round() as u16)
        .collect();
    // The weights must sum to exactly 256 so that 255 * 256 + 128 still fits in 16 bits.
    let sum: u16 = kernel.iter().sum();
    kernel[radius] = (kernel[radius] + (1 << SHIFT)).saturating_sub(sum);
    let round = 1u16 << (SHIFT - 1);
    let stride = width * 3;

    // horizontal: pad each row by `radius` replicated pixels, then sum shifted slices
    let mut horizontal = vec![0u8; stride * height];
    let mut padded = vec![0u8; stride + 2 * radius * 3];
    let mut acc = vec![0u16; stride];
    for (src, dst) in image
        .as_raw()
        .chunks_exact(stride)
        .zip(horizontal.chunks_exact_mut(stride))
    {
        for i in 0..radius {
            padded[i * 3..i * 3 + 3].copy_from_slice(&src[..3]);
            let end = stride + (radius + i) * 3;
            padded[end..end + 3].copy_from_slice(&src[stride - 3..]);
        }
        padded[radius * 3..radius * 3 + stride].copy_from_slice(src);
        acc.fill(round);
        for (k, &w) in kernel.iter().enumerate() {
            for (a, &p) in acc.iter_mut().zip(&padded[k * 3..k * 3 + stride]) {
                *a = a.wrapping_add(w * u16::from(p));
            }
        }
        for (d, a) in dst.iter_mut().zip(&acc) {
            *d = (a >> SHIFT) as u8;
        }
    }

    // vertical: sum whole rows, clamping the row index at the borders
    let mut out = vec![0u8; stride * height];
    for (y, dst) in out.chunks_exact_mut(stride).enumerate() {
        acc.fill(round);
        for (k, &w) in kernel.iter().enumerate() {
            let row = (y + k).saturating_sub(radius).min(height - 1);
            for (a, &p) in acc
                .iter_mut()
                .zip(&horizontal[row * stride..(row + 1) * stride])
            {
                *a = a.wrapping_add(w * u16::from(p));
            }
        }
        for (d, a) in dst.iter_mut().zip(&acc) {
            *d = (a >> SHIFT) as u8;
        }
    }
    RgbImage::from_raw(image.width(), image.height(), out).unwrap_or_else(|| image.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_images_shrink_to_the_max_side_and_boxes_map_back() {
        let image = RgbImage::new(2000, 1000);
        let settings = Preprocess {
            max_side: 500,
            mirror: true,
            unsharp_amount: 0.0,
            ..Preprocess::default()
        };
        let prepared = preprocess(image, &settings);
        assert_eq!(prepared.image.dimensions(), (500, 250));
        assert!((prepared.scale - 4.0).abs() < 1e-6);
        // a box at the left of the mirrored image is at the right of the original
        let back = prepared.to_original([0.0, 10.0, 100.0, 60.0]);
        assert_eq!(back, [1600.0, 40.0, 2000.0, 240.0]);
    }

    #[test]
    fn gaussian_blur_keeps_flat_images_and_spreads_a_point_symmetrically() {
        let flat = RgbImage::from_pixel(9, 7, image::Rgb([10, 200, 77]));
        assert_eq!(gaussian_blur(&flat, 1.3), flat);
        let mut point = RgbImage::new(11, 11);
        point.put_pixel(5, 5, image::Rgb([255, 255, 255]));
        let blurred = gaussian_blur(&point, 1.0);
        let centre = blurred.get_pixel(5, 5)[0];
        // a sigma-1 gaussian keeps 0.399^2 = 16% of the energy at the centre
        assert!((38..=44).contains(&centre), "centre {centre}");
        assert_eq!(blurred.get_pixel(4, 5), blurred.get_pixel(6, 5));
        assert_eq!(blurred.get_pixel(5, 4), blurred.get_pixel(4, 5));
    }

    #[test]
    fn a_sharpened_region_equals_the_same_part_of_a_sharpened_frame() {
        let frame = RgbImage::from_fn(120, 90, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x * y) % 251) as u8,
            ])
        });
        let settings = Preprocess::default();
        let whole = unsharp_mask(
            &frame,
            settings.unsharp_sigma,
            settings.unsharp_amount,
            settings.unsharp_threshold,
        );
        // one region inside the frame, one cut by its right and bottom edges
        for rect in [[30, 20, 40, 30], [90, 60, 60, 60]] {
            let region = sharpened_region(&frame, rect, &settings);
            let (w, h) = (rect[2].min(120 - rect[0]), rect[3].min(90 - rect[1]));
            for y in rect[1]..rect[1] + h {
                for x in rect[0]..rect[0] + w {
                    assert_eq!(
                        region.image.get_pixel(x - region.x, y - region.y),
                        whole.get_pixel(x, y),
                        "pixel ({x}, {y}) of {rect:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn unsharp_mask_raises_edge_contrast_and_keeps_flat_areas() {
        let image = RgbImage::from_fn(40, 40, |x, _| {
            if x < 20 {
                image::Rgb([80; 3])
            } else {
                image::Rgb([160; 3])
            }
        });
        let sharp = unsharp_mask(&image, 1.5, 1.0, 2);
        assert_eq!(sharp.get_pixel(2, 20)[0], 80, "flat area unchanged");
        assert!(
            sharp.get_pixel(19, 20)[0] < 80,
            "dark side of the edge gets darker"
        );
        assert!(
            sharp.get_pixel(20, 20)[0] > 160,
            "bright side of the edge gets brighter"
        );
    }
}
