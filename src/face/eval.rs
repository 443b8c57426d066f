//! Accuracy on labelled pairs: AUC, accuracy and error counts at a threshold, the best
//! threshold, and the ROC curve as SVG or PNG.

use std::path::Path;

use image::{Rgb, RgbImage};
use imageproc::drawing::draw_line_segment_mut;
use serde::Serialize;

/// One labelled pair of photos, by file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledPair {
    pub file_x: String,
    pub file_y: String,
    pub same_person: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredPair {
    pub similarity: f32,
    pub same_person: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    pub pairs: usize,
    pub auc: f64,
    pub accuracy: f64,
    pub threshold: f32,
    pub false_matches: usize,
    pub impostor_pairs: usize,
    pub false_non_matches: usize,
    pub genuine_pairs: usize,
    pub best_threshold: f32,
    pub best_accuracy: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    #[error("reading the pairs file: {0}")]
    Csv(#[from] csv::Error),
    #[error("the pairs file has no {0} column")]
    MissingColumn(&'static str),
    #[error("row {row}: {what}")]
    BadRow { row: usize, what: String },
}

/// Reads `file_x,file_y,Decision` rows (Yes/No; any header case; extra columns ignored; only
/// the file name of each path is kept).
pub fn parse_pairs(csv: impl std::io::Read) -> Result<Vec<LabelledPair>, PairsError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(csv);
    let header: Vec<String> = reader
        .headers()?
        .iter()
        .map(str::to_ascii_lowercase)
        .collect();
    let column = |name: &'static str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(PairsError::MissingColumn(name))
    };
    let (x, y, decision) = (column("file_x")?, column("file_y")?, column("decision")?);
    let file_name = |path: &str| path.rsplit(['/', '\\']).next().unwrap_or("").to_string();
    reader
        .records()
        .enumerate()
        .map(|(i, record)| {
            let record = record?;
            let row = i + 2;
            let get = |c: usize| {
                record.get(c).ok_or_else(|| PairsError::BadRow {
                    row,
                    what: "too few columns".into(),
                })
            };
            let same_person = match get(decision)?.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                other => {
                    return Err(PairsError::BadRow {
                        row,
                        what: format!("decision {other:?} is not Yes or No"),
                    });
                }
            };
            Ok(LabelledPair {
                file_x: file_name(get(x)?),
                file_y: file_name(get(y)?),
                same_person,
            })
        })
        .collect()
}

pub fn evaluate(scored: &[ScoredPair], threshold: f32) -> EvalReport {
    let genuine: Vec<f32> = scored
        .iter()
        .filter(|p| p.same_person)
        .map(|p| p.similarity)
        .collect();
    let impostor: Vec<f32> = scored
        .iter()
        .filter(|p| !p.same_person)
        .map(|p| p.similarity)
        .collect();
    let false_matches = impostor.iter().filter(|&&s| s >= threshold).count();
    let false_non_matches = genuine.iter().filter(|&&s| s < threshold).count();
    let (best_threshold, best_accuracy) = best_threshold(scored);
    EvalReport {
        pairs: scored.len(),
        auc: auc(&genuine, &impostor),
        accuracy: ratio(
            scored.len() - false_matches - false_non_matches,
            scored.len(),
        ),
        threshold,
        false_matches,
        impostor_pairs: impostor.len(),
        false_non_matches,
        genuine_pairs: genuine.len(),
        best_threshold,
        best_accuracy,
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Probability that a random genuine pair outscores a random impostor pair (ties count half).
pub fn auc(genuine: &[f32], impostor: &[f32]) -> f64 {
    if genuine.is_empty() || impostor.is_empty() {
        return 0.0;
    }
    let wins: f64 = genuine
        .iter()
        .map(|g| {
            impostor
                .iter()
                .map(|i| match g.total_cmp(i) {
                    std::cmp::Ordering::Greater => 1.0,
                    std::cmp::Ordering::Equal => 0.5,
                    std::cmp::Ordering::Less => 0.0,
                })
                .sum::<f64>()
        })
        .sum();
    wins / (genuine.len() as f64 * impostor.len() as f64)
}

/// The threshold (midway between neighbouring scores) that classifies the most pairs right.
fn best_threshold(scored: &[ScoredPair]) -> (f32, f64) {
    let mut scores: Vec<f32> = scored.iter().map(|p| p.similarity).collect();
    scores.sort_by(f32::total_cmp);
    scores.dedup();
    let mut candidates: Vec<f32> = scores.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    if let (Some(first), Some(last)) = (scores.first(), scores.last()) {
        candidates.push(first - 1e-3);
        candidates.push(last + 1e-3);
    }
    candidates
        .into_iter()
        .map(|t| {
            let right = scored
                .iter()
                .filter(|p| (p.similarity >= t) == p.same_person)
                .count();
            (t, ratio(right, scored.len()))
        })
        .fold((0.0, -1.0), |best, c| if c.1 > best.1 { c } else { best })
}

/// (false-match rate, true-match rate) as the threshold falls from the top score.
pub fn roc_points(scored: &[ScoredPair]) -> Vec<(f64, f64)> {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    let positives = sorted.iter().filter(|p| p.same_person).count().max(1) as f64;
    let negatives = sorted.iter().filter(|p| !p.same_person).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    for pair in sorted {
        if pair.same_person {
            tp += 1.0
        } else {
            fp += 1.0
        }
        points.push((fp / negatives, tp / positives));
    }
    points
}

/// Writes the ROC curve; the file's extension (`.svg` or `.png`) picks the format.
pub fn write_roc(path: &Path, points: &[(f64, f64)], auc: f64) -> std::io::Result<()> {
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if is_png {
        roc_png(points)
            .save(path)
            .map_err(|e| std::io::Error::other(e.to_string()))
    } else {
        std::fs::write(path, roc_svg(points, auc))
    }
}

const PLOT: f64 = 400.0;
const MARGIN: f64 = 50.0;

fn plot_xy((fpr, tpr): (f64, f64)) -> (f64, f64) {
    (MARGIN + fpr * PLOT, MARGIN + (1.0 - tpr) * PLOT)
}

fn roc_svg(points: &[(f64, f64)], auc: f64) -> String {
    let size = PLOT + 2.0 * MARGIN;
    let polyline: Vec<String> = points
        .iter()
        .map(|p| {
            let (x, y) = plot_xy(*p);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif" font-size="14">
<rect width="100%" height="100%" fill="white"/>
<rect x="{m}" y="{m}" width="{p}" height="{p}" fill="none" stroke="#444"/>
<line x1="{m}" y1="{b}" x2="{e}" y2="{m}" stroke="#bbb" stroke-dasharray="4"/>
<polyline points="{line}" fill="none" stroke="#1565c0" stroke-width="2"/>
<text x="{cx}" y="{lx}" text-anchor="middle">false match rate</text>
<text x="15" y="{cx}" text-anchor="middle" transform="rotate(-90 15 {cx})">true match rate</text>
<text x="{cx}" y="30" text-anchor="middle">ROC, AUC = {auc:.4}</text>
</svg>
"##,
        m = MARGIN,
        p = PLOT,
        b = MARGIN + PLOT,
        e = MARGIN + PLOT,
        cx = MARGIN + PLOT / 2.0,
        lx = size - 12.0,
        line = polyline.join(" "),
    )
}

fn roc_png(points: &[(f64, f64)]) -> RgbImage {
    let size = (PLOT + 2.0 * MARGIN) as u32;
    let mut image = RgbImage::from_pixel(size, size, Rgb([255, 255, 255]));
    let grey = Rgb([120, 120, 120]);
    let corners = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)];
    for pair in corners.windows(2) {
        line(&mut image, plot_xy(pair[0]), plot_xy(pair[1]), grey);
    }
    line(
        &mut image,
        plot_xy((0.0, 0.0)),
        plot_xy((1.0, 1.0)),
        Rgb([200, 200, 200]),
    );
    // three pixels wide, so a curve that hugs the frame still shows
    for pair in points.windows(2) {
        let ((x1, y1), (x2, y2)) = (plot_xy(pair[0]), plot_xy(pair[1]));
        for (dx, dy) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)] {
            line(
                &mut image,
                (x1 + dx, y1 + dy),
                (x2 + dx, y2 + dy),
                Rgb([21, 101, 192]),
            );
        }
    }
    image
}

fn line(image: &mut RgbImage, from: (f64, f64), to: (f64, f64), colour: Rgb<u8>) {
    draw_line_segment_mut(
        image,
        (from.0 as f32, from.1 as f32),
        (to.0 as f32, to.1 as f32),
        colour,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(similarity: f32, same_person: bool) -> ScoredPair {
        ScoredPair {
            similarity,
            same_person,
        }
    }

    #[test]
    fn counts_errors_at_the_threshold_and_finds_a_better_one() {
        let scored = [
            pair(0.9, true),
            pair(0.45, true),
            pair(0.3, false),
            pair(0.55, false),
        ];
        let report = evaluate(&scored, 0.5);
        assert_eq!(report.false_matches, 1);
        assert_eq!(report.false_non_matches, 1);
        assert_eq!(report.accuracy, 0.5);
        assert_eq!(report.auc, 0.75);
        assert_eq!(report.best_accuracy, 0.75);
    }

    #[test]
    fn perfect_separation_has_auc_one() {
        let scored = [pair(0.8, true), pair(0.7, true), pair(0.2, false)];
        let report = evaluate(&scored, 0.5);
        assert_eq!(report.auc, 1.0);
        assert_eq!(report.best_accuracy, 1.0);
        assert_eq!(roc_points(&scored).last(), Some(&(1.0, 1.0)));
    }

    #[test]
    fn pairs_files_with_paths_and_extra_columns_parse() {
        let csv = "file_x,file_y,decision,VGG-Face_cosine\n\
                   deepface/tests/dataset/img38.jpg,deepface/tests/dataset/img39.jpg,Yes,0.2\n\
                   img1.jpg,img2.jpg,No,0.9\n";
        let pairs = parse_pairs(csv.as_bytes()).expect("parse");
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].file_x, "img38.jpg");
        assert!(pairs[0].same_person);
        assert!(!pairs[1].same_person);
        assert!(parse_pairs("a,b\n1,2\n".as_bytes()).is_err());
    }
}
