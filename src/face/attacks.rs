//! Presentation attacks made from photos, to measure presentation attack detection as
//! ISO/IEC 30107-3 does: a flat picture held up to the camera, moved by hand or tilted to
//! imitate a head turn, printed or shown on a screen.

use image::{Rgb, RgbImage};
use nalgebra::{Matrix3, Vector3};

use super::landmarks::Point;
use super::pad::fit_homography;

/// The homography that shows `image` as a flat picture turned by `yaw` radians about its
/// vertical centre line and `pitch` about its horizontal one, seen from `distance` picture
/// widths away, then shifted by `shift` pixels: a photo held up and moved in front of a camera.
pub fn picture_motion(
    size: (u32, u32),
    yaw: f32,
    pitch: f32,
    shift: Point,
) -> Option<Matrix3<f64>> {
    let (w, h) = (f64::from(size.0), f64::from(size.1));
    let (cx, cy) = (w / 2.0, h / 2.0);
    // the picture 2.5 of its widths from the camera: a photo held at arm's length
    let distance = 2.5 * w;
    let (sy, cyaw) = f64::from(yaw).sin_cos();
    let (sp, cp) = f64::from(pitch).sin_cos();
    let (fw, fh) = (size.0 as f32, size.1 as f32);
    let corners: [Point; 4] = [[0.0, 0.0], [fw, 0.0], [fw, fh], [0.0, fh]];
    let moved: Vec<Point> = corners
        .iter()
        .map(|&[x, y]| {
            let (x, y) = (f64::from(x) - cx, f64::from(y) - cy);
            // turn about the vertical axis, then the horizontal one
            let (x, z) = (cyaw * x, -sy * x);
            let (y, z) = (cp * y - sp * z, sp * y + cp * z);
            let scale = distance / (distance + z);
            [
                (cx + x * scale) as f32 + shift[0],
                (cy + y * scale) as f32 + shift[1],
            ]
        })
        .collect();
    fit_homography(&corners, &moved)
}

/// `image` seen through `homography` (output pixel p shows input pixel H⁻¹p), bilinear, the
/// outside filled with `background`.
pub fn warp(image: &RgbImage, homography: &Matrix3<f64>, background: Rgb<u8>) -> Option<RgbImage> {
    let inverse = homography.try_inverse()?;
    let (w, h) = image.dimensions();
    Some(RgbImage::from_fn(w, h, |x, y| {
        let v = inverse * Vector3::new(f64::from(x) + 0.5, f64::from(y) + 0.5, 1.0);
        let (sx, sy) = (v[0] / v[2] - 0.5, v[1] / v[2] - 0.5);
        sample(image, sx, sy).unwrap_or(background)
    }))
}

fn sample(image: &RgbImage, x: f64, y: f64) -> Option<Rgb<u8>> {
    let (w, h) = image.dimensions();
    if !(x >= 0.0 && y >= 0.0 && x <= f64::from(w - 1) && y <= f64::from(h - 1)) {
        return None;
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - f64::from(x0), y - f64::from(y0));
    let at = |x, y, c: usize| f64::from(image.get_pixel(x, y).0[c]);
    Some(Rgb(std::array::from_fn(|c| {
        let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
        let bottom = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
        (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
    })))
}

/// `image` shown on a phone or laptop screen and filmed: shrunk into a dark bezel on a grey
/// desk, the panel's gamma and backlight, the moire of its pixel grid beating with the
/// camera's, and the defocus of a screen held close. (The JPEG at the end is the caller's.)
pub fn on_screen(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut frame = RgbImage::from_pixel(w, h, Rgb([120, 118, 112]));
    // the screen fills 80% of the frame, its bezel 4% more
    let (sw, sh) = ((w as f32 * 0.8) as u32, (h as f32 * 0.8) as u32);
    let (bx, by) = ((w - sw) / 2, (h - sh) / 2);
    let bezel = (w.min(h) as f32 * 0.04) as u32;
    for y in by.saturating_sub(bezel)..(by + sh + bezel).min(h) {
        for x in bx.saturating_sub(bezel)..(bx + sw + bezel).min(w) {
            frame.put_pixel(x, y, Rgb([18, 18, 20]));
        }
    }
    let shown = image::imageops::resize(image, sw, sh, image::imageops::FilterType::Triangle);
    for (x, y, pixel) in shown.enumerate_pixels() {
        // a backlit panel: lifted blacks, a cooler white, and the grid's moire
        let moire = 1.0 + 0.07 * ((x as f32 * 0.93 + y as f32 * 0.31) * 2.1).sin();
        let value = pixel.0.map(f32::from);
        let lit = [
            (18.0 + 0.86 * 255.0 * (value[0] / 255.0).powf(0.85)) * moire,
            (18.0 + 0.88 * 255.0 * (value[1] / 255.0).powf(0.85)) * moire,
            (22.0 + 0.92 * 255.0 * (value[2] / 255.0).powf(0.85)) * moire,
        ];
        frame.put_pixel(
            x + bx,
            y + by,
            Rgb(lit.map(|v| v.round().clamp(0.0, 255.0) as u8)),
        );
    }
    image::imageops::blur(&frame, 1.2)
}

/// `image` printed on paper and held up: less contrast (ink never reaches black, paper never
/// white), a warm paper tone, and the softness of print and focus.
pub fn printed(image: &RgbImage) -> RgbImage {
    let toned = RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let value = image.get_pixel(x, y).0.map(f32::from);
        let paper = [236.0, 228.0, 210.0];
        Rgb(std::array::from_fn(|c| {
            let ink = 30.0 + (paper[c] - 30.0) * (value[c] / 255.0).powf(1.15);
            ink.round().clamp(0.0, 255.0) as u8
        }))
    });
    image::imageops::blur(&toned, 1.6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turned_picture_narrows_and_keeps_its_centre() {
        let size = (200, 100);
        let h = picture_motion(size, 0.5, 0.0, [0.0, 0.0]).expect("motion");
        let map = |x: f64, y: f64| {
            let v = h * Vector3::new(x, y, 1.0);
            (v[0] / v[2], v[1] / v[2])
        };
        let (cx, cy) = map(100.0, 50.0);
        assert!(
            (cx - 100.0).abs() < 1e-3 && (cy - 50.0).abs() < 1e-3,
            "{cx} {cy}"
        );
        let (left, _) = map(0.0, 50.0);
        let (right, _) = map(200.0, 50.0);
        assert!(right - left < 190.0, "narrower: {}", right - left);
        // the side turned towards the camera is taller than the side turned away
        let (_, top_left) = map(0.0, 0.0);
        let (_, top_right) = map(200.0, 0.0);
        assert!((top_left - top_right).abs() > 1.0);
    }

    #[test]
    fn warping_by_the_identity_keeps_the_image() {
        let image = RgbImage::from_fn(16, 8, |x, y| Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let same = warp(&image, &Matrix3::identity(), Rgb([0, 0, 0])).expect("warp");
        assert_eq!(same, image);
    }
}
