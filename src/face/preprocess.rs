//! The preprocessing the seed applied to every camera frame, kept configurable and applied the
//! same way to enrollment photos and login frames so that both land in the same space.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
            max_side: 1024,
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

pub fn preprocess(image: RgbImage, settings: &Preprocess) -> Prepared {
    let original_size = image.dimensions();
    let (mut image, scale) = shrink_to_max_side(image, settings.max_side);
    if settings.mirror {
        image::imageops::flip_horizontal_in_place(&mut image);
    }
    if settings.unsharp_amount > 0.0 {
        image = unsharp_mask(
            &image,
            settings.unsharp_sigma,
            settings.unsharp_amount,
            settings.unsharp_threshold,
        );
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

/// Classic unsharp mask over a fast gaussian approximation (three box blurs).
pub fn unsharp_mask(image: &RgbImage, sigma: f32, amount: f32, threshold: u8) -> RgbImage {
    let blurred = image::imageops::fast_blur(image, sigma);
    let mut out = image.clone();
    let threshold = i16::from(threshold);
    for (dst, blur) in out.as_mut().iter_mut().zip(blurred.as_raw()) {
        let diff = i16::from(*dst) - i16::from(*blur);
        if diff.abs() >= threshold {
            let value = f32::from(*dst) + amount * f32::from(diff);
            *dst = value.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
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
    fn unsharp_mask_raises_edge_contrast_and_keeps_flat_areas() {
        let image = RgbImage::from_fn(40, 40, |x, _| {
            if x < 20 { image::Rgb([80; 3]) } else { image::Rgb([160; 3]) }
        });
        let sharp = unsharp_mask(&image, 1.5, 1.0, 2);
        assert_eq!(sharp.get_pixel(2, 20)[0], 80, "flat area unchanged");
        assert!(sharp.get_pixel(19, 20)[0] < 80, "dark side of the edge gets darker");
        assert!(sharp.get_pixel(20, 20)[0] > 160, "bright side of the edge gets brighter");
    }
}
