//! Geometric signals for presentation attack detection, from the 68 landmarks of a face in
//! two or more frames:
//! - `yaw`: how far the head is turned, for a challenge that asks for a turn;
//! - `planar_residual`: how well one planar transform (a homography) explains how the
//!   landmarks moved between two frames. A photo or a screen, however it is moved or tilted
//!   in front of the camera, moves all its landmarks by one homography (up to the landmark
//!   model's noise); a real head turning does not, because the nose stands out of the plane
//!   of the eyes and the mouth.

use nalgebra::{DMatrix, Matrix3, Vector3};

use super::landmarks::Point;

/// iBUG 68: the points on the face itself (brows, nose, eyes, mouth). The jaw line (0..17) is
/// left out: it is a silhouette, not fixed points on the face, so it slides as the head turns.
const INNER: std::ops::Range<usize> = 17..68;
const NOSE_TIP: usize = 30;
const LEFT_EYE: std::ops::Range<usize> = 36..42;
const RIGHT_EYE: std::ops::Range<usize> = 42..48;
/// the outline at the level of the eyes, each side
const OUTLINE_LEFT: usize = 1;
const OUTLINE_RIGHT: usize = 15;

fn mean(points: &[Point]) -> Point {
    let n = points.len().max(1) as f32;
    let (x, y) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
    [x / n, y / n]
}

fn distance(a: Point, b: Point) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// The distance between the eye centres: the face's own unit of length.
pub fn interocular(points: &[Point]) -> Option<f32> {
    (points.len() >= 68).then(|| distance(mean(&points[LEFT_EYE]), mean(&points[RIGHT_EYE])))
}

/// How far the head is turned, from -1 to 1: where the nose tip sits between the two sides
/// of the face's outline at eye level, 0 when in the middle. Positive when the nose is towards
/// the image's right (larger x).
pub fn yaw(points: &[Point]) -> Option<f32> {
    if points.len() < 68 {
        return None;
    }
    let (left, right) = (points[OUTLINE_LEFT][0], points[OUTLINE_RIGHT][0]);
    let width = right - left;
    (width.abs() > f32::EPSILON).then(|| 2.0 * (points[NOSE_TIP][0] - left) / width - 1.0)
}

/// The root-mean-square distance, in interocular distances of the second frame, between the
/// second frame's inner landmarks and the first frame's mapped by the homography that fits
/// them best. Near 0: one plane explains the motion (a photo, a screen); larger: depth.
pub fn planar_residual(first: &[Point], second: &[Point]) -> Option<f32> {
    if first.len() < 68 || second.len() < 68 {
        return None;
    }
    let (a, b) = (&first[INNER], &second[INNER]);
    let homography = fit_homography(a, b)?;
    let unit = interocular(second)?;
    if unit <= f32::EPSILON {
        return None;
    }
    let squared: f64 = a
        .iter()
        .zip(b)
        .map(|(p, q)| {
            let mapped = homography * Vector3::new(f64::from(p[0]), f64::from(p[1]), 1.0);
            let (x, y) = (mapped[0] / mapped[2], mapped[1] / mapped[2]);
            (x - f64::from(q[0])).powi(2) + (y - f64::from(q[1])).powi(2)
        })
        .sum();
    Some(((squared / a.len() as f64).sqrt() / f64::from(unit)) as f32)
}

/// Moves points to their centroid and scales them to a mean distance of sqrt(2) from it
/// (Hartley's normalisation, which keeps the linear fit well conditioned).
fn normaliser(points: &[Point]) -> Option<Matrix3<f64>> {
    let [cx, cy] = mean(points).map(f64::from);
    let spread = points
        .iter()
        .map(|p| ((f64::from(p[0]) - cx).powi(2) + (f64::from(p[1]) - cy).powi(2)).sqrt())
        .sum::<f64>()
        / points.len() as f64;
    if spread <= f64::EPSILON {
        return None;
    }
    let s = std::f64::consts::SQRT_2 / spread;
    Some(Matrix3::new(
        s,
        0.0,
        -s * cx,
        0.0,
        s,
        -s * cy,
        0.0,
        0.0,
        1.0,
    ))
}

/// The homography that maps `from` onto `to` best in the algebraic sense (normalised direct
/// linear transform), at least four points each.
pub fn fit_homography(from: &[Point], to: &[Point]) -> Option<Matrix3<f64>> {
    if from.len() < 4 || from.len() != to.len() {
        return None;
    }
    let (t_from, t_to) = (normaliser(from)?, normaliser(to)?);
    let apply = |t: &Matrix3<f64>, p: &Point| {
        let v = t * Vector3::new(f64::from(p[0]), f64::from(p[1]), 1.0);
        (v[0], v[1])
    };
    let mut rows = DMatrix::<f64>::zeros(2 * from.len(), 9);
    for (i, (p, q)) in from.iter().zip(to).enumerate() {
        let ((x, y), (u, v)) = (apply(&t_from, p), apply(&t_to, q));
        let r = 2 * i;
        rows.row_mut(r)
            .copy_from_slice(&[-x, -y, -1.0, 0.0, 0.0, 0.0, u * x, u * y, u]);
        rows.row_mut(r + 1)
            .copy_from_slice(&[0.0, 0.0, 0.0, -x, -y, -1.0, v * x, v * y, v]);
    }
    // the solution is the eigenvector of AᵀA with the smallest eigenvalue
    let eigen = (rows.transpose() * &rows).symmetric_eigen();
    let smallest = eigen
        .eigenvalues
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))?
        .0;
    let h = eigen.eigenvectors.column(smallest);
    let normalised = Matrix3::from_row_slice(h.as_slice());
    let homography = t_to.try_inverse()? * normalised * t_from;
    (homography[(2, 2)].abs() > f64::EPSILON).then(|| homography / homography[(2, 2)])
}

/// A head turn the server can ask for, named from the person's side: "turn your head to
/// your left".
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Turn {
    Left,
    Right,
}

impl Turn {
    /// The sign of `yaw` as the turn moves it in an unmirrored camera frame: facing the
    /// camera, a person's left is the frame's right, so turning left moves the nose to larger x.
    pub fn yaw_sign(self, mirrored: bool) -> f32 {
        let sign = match self {
            Turn::Left => 1.0,
            Turn::Right => -1.0,
        };
        if mirrored { -sign } else { sign }
    }
}

/// How much the yaw must change for a turn to count: about 10 degrees of head turn.
pub const MIN_TURN: f32 = 0.15;
/// The median planar residual (interocular distances) over turned frame pairs below which the
/// motion is one plane's: measured on the shared photos, a moved photo leaves 0.0074 (median,
/// 95%: 0.0142), two photos of one person turned apart 0.042 (5%: 0.027).
pub const FLAT_RESIDUAL: f32 = 0.02;

/// What the burst showed, for the audit log.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct BurstSignals {
    /// the frames with a face's landmarks
    pub frames: usize,
    /// how far the yaw travelled, first frame to the furthest
    pub yaw_travel: f32,
    /// the median planar residual of the frame pairs turned at least `MIN_TURN` apart
    pub planar_residual: Option<f32>,
}

/// Why a burst is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BurstRefusal {
    #[error("the burst has too few frames with a face")]
    TooFewFrames,
    #[error("the asked head turn was not seen")]
    TurnNotSeen,
    #[error("the face moved as a flat picture does")]
    Flat,
}

/// Judges the landmarks of a burst's frames (in capture order) against the asked turns:
/// each turn seen in order, by at least `MIN_TURN` after the last one ended, and the motion
/// not that of one plane.
pub fn judge_burst(
    frames: &[Vec<Point>],
    asked: &[Turn],
    mirrored: bool,
) -> (BurstSignals, Result<(), BurstRefusal>) {
    let yaws: Vec<f32> = frames.iter().filter_map(|f| yaw(f)).collect();
    let mut signals = BurstSignals {
        frames: yaws.len(),
        ..BurstSignals::default()
    };
    if yaws.len() < 2 || yaws.len() != frames.len() {
        return (signals, Err(BurstRefusal::TooFewFrames));
    }
    signals.yaw_travel = yaws.iter().map(|y| (y - yaws[0]).abs()).fold(0.0, f32::max);
    let mut pairs: Vec<f32> = Vec::new();
    for i in 0..frames.len() {
        for j in i + 1..frames.len() {
            if (yaws[i] - yaws[j]).abs() >= MIN_TURN
                && let Some(residual) = planar_residual(&frames[i], &frames[j])
            {
                pairs.push(residual);
            }
        }
    }
    pairs.sort_by(f32::total_cmp);
    signals.planar_residual = pairs.get(pairs.len() / 2).copied();
    // each turn after the previous one ended, in order; a turn starts wherever the head was
    // furthest the other way (a person may start a little turned, or turn back first)
    let mut from = 0;
    for turn in asked {
        let sign = turn.yaw_sign(mirrored);
        let mut start = from;
        let mut reached = None;
        for j in from + 1..yaws.len() {
            let moved = (yaws[j] - yaws[start]) * sign;
            if moved >= MIN_TURN {
                reached = Some(j);
                break;
            }
            if moved < 0.0 {
                start = j;
            }
        }
        let Some(reached) = reached else {
            return (signals, Err(BurstRefusal::TurnNotSeen));
        };
        // follow the turn to its furthest frame
        let mut end = reached;
        while end + 1 < yaws.len() && (yaws[end + 1] - yaws[end]) * sign > 0.0 {
            end += 1;
        }
        from = end;
    }
    match signals.planar_residual {
        Some(residual) if residual >= FLAT_RESIDUAL => (signals, Ok(())),
        _ => (signals, Err(BurstRefusal::Flat)),
    }
}

/// A 64-bit difference hash of a face: the face's box (grown by a fifth) shrunk to 9x8
/// grey pixels, each bit whether a pixel is brighter than its right neighbour. Re-encoding,
/// resizing, blur and small shifts change few bits; another moment of a live face changes
/// many. The server keeps the hashes of accepted bursts to refuse their frames if they come
/// again (a replay).
pub fn face_hash(image: &image::RgbImage, bbox: [f32; 4]) -> Option<u64> {
    let (w, h) = image.dimensions();
    let grow = 0.2 * (bbox[2] - bbox[0]).max(bbox[3] - bbox[1]);
    let clamp = |v: f32, max: u32| v.max(0.0).min(max as f32) as u32;
    let (x0, y0) = (clamp(bbox[0] - grow, w), clamp(bbox[1] - grow, h));
    let (x1, y1) = (clamp(bbox[2] + grow, w), clamp(bbox[3] + grow, h));
    if x1 <= x0 + 9 || y1 <= y0 + 8 {
        return None;
    }
    let face = image::imageops::crop_imm(image, x0, y0, x1 - x0, y1 - y0).to_image();
    let grey = image::imageops::grayscale(&face);
    let small = image::imageops::resize(&grey, 9, 8, image::imageops::FilterType::Triangle);
    let mut hash = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let brighter = small.get_pixel(x, y).0[0] > small.get_pixel(x + 1, y).0[0];
            hash = (hash << 1) | u64::from(brighter);
        }
    }
    Some(hash)
}

/// Bits that differ between two face hashes: at most `SAME_FRAME_BITS` for the same frame
/// sent again.
pub fn hash_distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Measured on the shared photos (61): a frame re-encoded at JPEG quality 60 and scaled by 0.9
/// differs from itself by at most 2 bits; two different photos by at least 6 (1%: 10).
pub const SAME_FRAME_BITS: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// A face-like set of 68 points in 3-D (x right, y down, z towards the camera, in
    /// interocular distances of about 1): flat except that the nose stands out and the
    /// outline recedes, as on a real head.
    fn head() -> Vec<[f32; 3]> {
        (0..68)
            .map(|i| {
                let t = i as f32;
                let (x, y) = ((t * 0.37).sin() * 1.2, (t * 0.23).cos() * 1.3);
                let z = match i {
                    27..=35 => 0.35 + 0.1 * (i - 27) as f32 / 8.0, // the nose
                    0..=16 => -0.6,                                // the outline
                    _ => 0.0,
                };
                [x, y, z]
            })
            .collect()
    }

    fn with_eyes_and_outline(mut points: Vec<[f32; 3]>) -> Vec<[f32; 3]> {
        for (k, point) in points[36..42].iter_mut().enumerate() {
            *point = [-0.5 + 0.02 * k as f32, -0.4, 0.0];
        }
        for (k, point) in points[42..48].iter_mut().enumerate() {
            *point = [0.5 + 0.02 * k as f32, -0.4, 0.0];
        }
        points[1] = [-1.0, -0.3, -0.6];
        points[15] = [1.0, -0.3, -0.6];
        points[30] = [0.0, 0.2, 0.5];
        points
    }

    /// A pinhole camera 5 units away looking at the head turned by `yaw` radians about the
    /// vertical axis; 100 pixels a unit.
    fn view(points: &[[f32; 3]], yaw: f32) -> Vec<Point> {
        let (s, c) = yaw.sin_cos();
        points
            .iter()
            .map(|&[x, y, z]| {
                let (x, z) = (c * x + s * z, -s * x + c * z);
                let depth = 5.0 - z;
                [320.0 + 500.0 * x / depth, 240.0 + 500.0 * y / depth]
            })
            .collect()
    }

    /// The same head printed flat (every z = 0), then held up and moved by `h`.
    fn photo_moved(points: &[Point], h: &Matrix3<f64>) -> Vec<Point> {
        points
            .iter()
            .map(|p| {
                let v = h * Vector3::new(f64::from(p[0]), f64::from(p[1]), 1.0);
                [(v[0] / v[2]) as f32, (v[1] / v[2]) as f32]
            })
            .collect()
    }

    #[test]
    fn a_photo_tilted_and_moved_is_explained_by_one_homography() {
        let frontal = view(&with_eyes_and_outline(head()), 0.0);
        let tilt = Matrix3::new(1.05, 0.08, 12.0, -0.04, 0.97, -7.0, 0.0004, -0.0002, 1.0);
        let moved = photo_moved(&frontal, &tilt);
        let residual = planar_residual(&frontal, &moved).expect("68 points");
        assert!(residual < 1e-3, "{residual}");
    }

    #[test]
    fn a_head_turning_is_not_explained_by_one_homography() {
        let head = with_eyes_and_outline(head());
        let (frontal, turned) = (view(&head, 0.0), view(&head, 0.3));
        let residual = planar_residual(&frontal, &turned).expect("68 points");
        assert!(residual > 0.02, "{residual}");
    }

    #[test]
    fn yaw_follows_the_nose_between_the_sides_of_the_face() {
        let head = with_eyes_and_outline(head());
        let frontal = yaw(&view(&head, 0.0)).expect("68 points");
        assert!(frontal.abs() < 0.05, "{frontal}");
        let right = yaw(&view(&head, 0.4)).expect("68 points");
        let left = yaw(&view(&head, -0.4)).expect("68 points");
        assert!(right > 0.2 && left < -0.2, "{left} {right}");
        assert_eq!(yaw(&head_points_too_few()), None);
    }

    fn head_points_too_few() -> Vec<Point> {
        vec![[0.0, 0.0]; 10]
    }

    #[test]
    fn the_fit_recovers_a_known_homography() {
        let from: Vec<Point> = (0..20)
            .map(|i| [(i * 37 % 101) as f32, (i * 53 % 89) as f32])
            .collect();
        let h = Matrix3::new(0.9, 0.1, 5.0, -0.2, 1.1, 3.0, 0.001, 0.0005, 1.0);
        let to = photo_moved(&from, &h);
        let fitted = fit_homography(&from, &to).expect("a fit");
        assert!((fitted - h).abs().max() < 1e-6, "{fitted}");
    }

    #[test]
    fn a_head_turning_as_asked_passes_and_a_picture_turned_the_same_way_does_not() {
        let head = with_eyes_and_outline(head());
        // facing the camera, turning to the left moves the nose to larger x: yaw > 0
        let live: Vec<Vec<Point>> = [0.0, 0.15, 0.3, 0.45]
            .iter()
            .map(|&a| view(&head, a))
            .collect();
        let (signals, verdict) = judge_burst(&live, &[Turn::Left], false);
        assert_eq!(verdict, Ok(()), "{signals:?}");
        assert!(signals.planar_residual.is_some_and(|r| r >= FLAT_RESIDUAL));
        assert_eq!(
            judge_burst(&live, &[Turn::Right], false).1,
            Err(BurstRefusal::TurnNotSeen),
            "the other way"
        );
        assert_eq!(
            judge_burst(&live, &[Turn::Right], true).1,
            Ok(()),
            "mirrored"
        );

        // the frontal view printed and turned as a flat picture
        let frontal = view(&head, 0.0);
        let picture: Vec<Vec<Point>> = [0.0f64, 0.002, 0.004, 0.006]
            .iter()
            .map(|&p| {
                let h = Matrix3::new(1.0 - 200.0 * p, 0.0, 640.0 * p, 0.0, 1.0, 0.0, p, 0.0, 1.0);
                photo_moved(&frontal, &h)
            })
            .collect();
        let (signals, verdict) = judge_burst(&picture, &[Turn::Left], false);
        assert!(signals.yaw_travel > 0.0, "{signals:?}");
        assert!(
            matches!(verdict, Err(BurstRefusal::Flat | BurstRefusal::TurnNotSeen)),
            "{signals:?} {verdict:?}"
        );
    }

    #[test]
    fn two_turns_must_come_in_the_asked_order() {
        let head = with_eyes_and_outline(head());
        let left_then_right: Vec<Vec<Point>> = [0.0, 0.3, 0.0, -0.3]
            .iter()
            .map(|&a| view(&head, a))
            .collect();
        assert_eq!(
            judge_burst(&left_then_right, &[Turn::Left, Turn::Right], false).1,
            Ok(())
        );
        assert_eq!(
            judge_burst(&left_then_right, &[Turn::Right, Turn::Left], false).1,
            Err(BurstRefusal::TurnNotSeen)
        );
        assert_eq!(
            judge_burst(&left_then_right[..1], &[Turn::Left], false).1,
            Err(BurstRefusal::TooFewFrames)
        );
    }
}
