//! Five-point similarity alignment onto the ArcFace 112x112 template.

use image::RgbImage;
use nalgebra::{Matrix2, Vector2};

use super::landmarks::Point;

pub const ALIGNED_SIZE: u32 = 112;

/// Where the eyes, nose tip and mouth corners sit in a 112x112 ArcFace crop.
pub const ARCFACE_TEMPLATE: [Point; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A 2x3 affine matrix [a, b, c, d, e, f]: x' = a x + b y + c, y' = d x + e y + f.
pub type Affine = [f64; 6];

/// Least-squares similarity transform (rotation, uniform scale, translation; no reflection)
/// taking `src` onto `dst`: Umeyama (1991). None when the points are degenerate.
pub fn similarity_transform(src: &[Point], dst: &[Point]) -> Option<Affine> {
    let n = src.len().min(dst.len());
    if n < 2 {
        return None;
    }
    let to_vec = |p: &Point| Vector2::new(f64::from(p[0]), f64::from(p[1]));
    let mean = |pts: &[Point]| pts[..n].iter().map(to_vec).sum::<Vector2<f64>>() / n as f64;
    let (mu_src, mu_dst) = (mean(src), mean(dst));

    let mut covariance = Matrix2::<f64>::zeros();
    let mut src_variance = 0.0;
    for (s, d) in src[..n].iter().zip(&dst[..n]) {
        let (s, d) = (to_vec(s) - mu_src, to_vec(d) - mu_dst);
        covariance += d * s.transpose();
        src_variance += s.norm_squared();
    }
    covariance /= n as f64;
    src_variance /= n as f64;
    if src_variance <= f64::EPSILON {
        return None;
    }

    let svd = covariance.svd(true, true);
    let (u, v_t) = (svd.u?, svd.v_t?);
    // Flip the weaker axis when the best fit would be a reflection.
    let reflect = if covariance.determinant() < 0.0 {
        -1.0
    } else {
        1.0
    };
    let d = Matrix2::new(1.0, 0.0, 0.0, reflect);
    let rotation = u * d * v_t;
    let scale = (svd.singular_values[0] + reflect * svd.singular_values[1]) / src_variance;
    let translation = mu_dst - scale * rotation * mu_src;
    Some([
        scale * rotation[(0, 0)],
        scale * rotation[(0, 1)],
        translation[0],
        scale * rotation[(1, 0)],
        scale * rotation[(1, 1)],
        translation[1],
    ])
}

/// Applies the affine map (source -> output) with bilinear sampling, like OpenCV's
/// `warpAffine`: an output pixel whose four source neighbours are not all inside the image is
/// black. Written for RGB8 rather than through `imageproc`'s generic warp, which took 3 ms for
/// VGG-Face's 224x224 crop (65 ns a pixel) and rounded twice (down, each time) per sample.
pub fn warp_affine(image: &RgbImage, m: &Affine, width: u32, height: u32) -> Option<RgbImage> {
    let [a, b, c, d, e, f] = *m;
    let det = a * e - b * d;
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    // the inverse map: output pixel -> source position
    let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
    let (ic, i_f) = (-(ia * c + ib * f), -(id * c + ie * f));
    let (source_w, source_h) = (image.width() as usize, image.height() as usize);
    let source = image.as_raw();
    let stride = source_w * 3;
    let mut out = RgbImage::new(width, height);
    let (max_left, max_top) = (source_w as f32 - 1.0, source_h as f32 - 1.0);
    for (y, row) in out
        .as_mut()
        .chunks_exact_mut(width as usize * 3)
        .enumerate()
    {
        let (row_x, row_y) = (ib * y as f64 + ic, ie * y as f64 + i_f);
        for (x, pixel) in row.chunks_exact_mut(3).enumerate() {
            let sx = (ia * x as f64 + row_x) as f32;
            let sy = (id * x as f64 + row_y) as f32;
            // positive checks, so that NaN lands outside too; then truncation is the floor
            // (floor() itself is a library call on baseline x86-64)
            if !(sx >= 0.0 && sy >= 0.0 && sx < max_left && sy < max_top) {
                continue;
            }
            let (left, top) = (sx as usize, sy as usize);
            let (fx, fy) = (sx - left as f32, sy - top as f32);
            let at = top * stride + left * 3;
            let (upper, lower) = (&source[at..at + 6], &source[at + stride..at + stride + 6]);
            for channel in 0..3 {
                let mix = |row: &[u8]| {
                    f32::from(row[channel]) * (1.0 - fx) + f32::from(row[channel + 3]) * fx
                };
                let value = mix(upper) * (1.0 - fy) + mix(lower) * fy;
                pixel[channel] = (value + 0.5).min(255.0) as u8;
            }
        }
    }
    Some(out)
}

/// The source pixels `[x, y, width, height]` (clipped to `image_size`) that a warp to a
/// `size` x `size` output reads, with one extra pixel for bilinear sampling.
pub fn source_footprint(m: &Affine, size: u32, image_size: (u32, u32)) -> Option<[u32; 4]> {
    let [a, b, c, d, e, f] = *m;
    let det = a * e - b * d;
    if det.abs() < 1e-12 {
        return None;
    }
    let s = f64::from(size);
    let corners = [(0.0, 0.0), (s, 0.0), (0.0, s), (s, s)].map(|(u, v)| {
        let (u, v) = (u - c, v - f);
        ((e * u - b * v) / det, (a * v - d * u) / det)
    });
    // the corners' span on one axis, widened by the pixel bilinear sampling reads beyond
    let span = |axis: fn(&(f64, f64)) -> f64| {
        let values = corners.iter().map(axis);
        let low = values.clone().fold(f64::INFINITY, f64::min);
        let high = values.fold(f64::NEG_INFINITY, f64::max);
        (low.floor() - 1.0, high.ceil() + 2.0)
    };
    let ((min_x, max_x), (min_y, max_y)) = (span(|p| p.0), span(|p| p.1));
    let clip = |v: f64, max: u32| v.clamp(0.0, f64::from(max)) as u32;
    let (x1, y1) = (clip(min_x, image_size.0), clip(min_y, image_size.1));
    let (x2, y2) = (clip(max_x, image_size.0), clip(max_y, image_size.1));
    (x2 > x1 && y2 > y1).then_some([x1, y1, x2 - x1, y2 - y1])
}

/// The same map for a sub-image whose top-left corner is at (x, y) in the original.
pub fn shifted(m: &Affine, x: u32, y: u32) -> Affine {
    let (x, y) = (f64::from(x), f64::from(y));
    [
        m[0],
        m[1],
        m[2] + m[0] * x + m[1] * y,
        m[3],
        m[4],
        m[5] + m[3] * x + m[4] * y,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn apply(m: &Affine, p: Point) -> Point {
        let (x, y) = (f64::from(p[0]), f64::from(p[1]));
        [
            (m[0] * x + m[1] * y + m[2]) as f32,
            (m[3] * x + m[4] * y + m[5]) as f32,
        ]
    }

    #[test]
    fn recovers_a_known_similarity_exactly() {
        // rotate by 20 degrees, scale 2.5, shift (100, -40)
        let (s, a) = (2.5f64, 20f64.to_radians());
        let known = [
            s * a.cos(),
            -s * a.sin(),
            100.0,
            s * a.sin(),
            s * a.cos(),
            -40.0,
        ];
        let moved: Vec<Point> = ARCFACE_TEMPLATE.iter().map(|p| apply(&known, *p)).collect();
        let m = similarity_transform(&ARCFACE_TEMPLATE, &moved).expect("fit");
        for (got, want) in m.iter().zip(known) {
            assert!((got - want).abs() < 1e-3, "{m:?} vs {known:?}");
        }
    }

    #[test]
    fn never_fits_a_reflection() {
        let mirrored: Vec<Point> = ARCFACE_TEMPLATE.iter().map(|p| [-p[0], p[1]]).collect();
        let m = similarity_transform(&ARCFACE_TEMPLATE, &mirrored).expect("fit");
        let determinant = m[0] * m[4] - m[1] * m[3];
        assert!(determinant > 0.0, "a similarity keeps orientation: {m:?}");
    }

    #[test]
    fn warping_a_cut_out_footprint_equals_warping_the_whole_image() {
        let image = RgbImage::from_fn(300, 200, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let five = [
            [140.0, 80.0],
            [180.0, 84.0],
            [160.0, 105.0],
            [145.0, 125.0],
            [176.0, 128.0],
        ];
        let m = similarity_transform(&five, &ARCFACE_TEMPLATE).expect("fit");
        let whole = warp_affine(&image, &m, 112, 112).expect("warp");
        let [x, y, w, h] = source_footprint(&m, 112, image.dimensions()).expect("footprint");
        assert!(
            w < 150 && h < 150,
            "the footprint is about the face: {w}x{h}"
        );
        let cut = image::imageops::crop_imm(&image, x, y, w, h).to_image();
        let part = warp_affine(&cut, &shifted(&m, x, y), 112, 112).expect("warp");
        assert_eq!(whole, part);
    }

    #[test]
    fn a_half_pixel_shift_averages_neighbours_rounded_once_and_borders_are_black() {
        let image = RgbImage::from_fn(8, 4, |x, y| Rgb([(x * 31) as u8, (y * 50 + 1) as u8, 200]));
        // output (x, y) samples source (x + 0.5, y)
        let shift: Affine = [1.0, 0.0, -0.5, 0.0, 1.0, 0.0];
        let out = warp_affine(&image, &shift, 8, 3).expect("invertible");
        for x in 0..7 {
            let (p, q) = (image.get_pixel(x, 1), image.get_pixel(x + 1, 1));
            for c in 0..3 {
                let mean = (f32::from(p[c]) + f32::from(q[c])) / 2.0;
                assert_eq!(
                    out.get_pixel(x, 1)[c],
                    (mean + 0.5) as u8,
                    "x {x} channel {c}"
                );
            }
        }
        assert_eq!(
            out.get_pixel(7, 1),
            &Rgb([0, 0, 0]),
            "the last column reads past the edge"
        );
    }

    #[test]
    fn a_translation_warp_moves_pixels() {
        let image = RgbImage::from_fn(20, 20, |x, y| Rgb([x as u8 * 10, y as u8 * 10, 7]));
        let shift: Affine = [1.0, 0.0, -3.0, 0.0, 1.0, -2.0];
        let out = warp_affine(&image, &shift, 10, 10).expect("invertible");
        assert_eq!(out.get_pixel(0, 0), image.get_pixel(3, 2));
        assert_eq!(out.get_pixel(5, 7), image.get_pixel(8, 9));
    }
}
