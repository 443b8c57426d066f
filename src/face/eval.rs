//! Accuracy on labelled pairs: AUC, accuracy and error counts at a threshold, the best
//! threshold, and the ROC curve as SVG or PNG.

use std::path::Path;

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;
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

/// Writes the ROC curve with its axes, labels and AUC; the file's extension (`.svg` or `.png`)
/// picks the format.
pub fn write_roc(path: &Path, points: &[(f64, f64)], auc: f64) -> std::io::Result<()> {
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    // both backends measure text with it
    register_plot_font();
    let drawn = if is_png {
        draw_roc(
            BitMapBackend::new(path, PLOT_SIZE).into_drawing_area(),
            points,
            auc,
        )
    } else {
        draw_roc(
            SVGBackend::new(path, PLOT_SIZE).into_drawing_area(),
            points,
            auc,
        )
    };
    drawn.map_err(std::io::Error::other)
}

const PLOT_SIZE: (u32, u32) = (520, 520);

/// The text is laid out (and in the PNG drawn) with a font compiled in, DejaVu Sans, so the
/// plot looks the same on a server without fonts installed.
fn register_plot_font() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // the bytes are a known-good TTF; a failure would only leave the text out
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn draw_roc<B: DrawingBackend>(
    area: DrawingArea<B, plotters::coord::Shift>,
    points: &[(f64, f64)],
    auc: f64,
) -> Result<(), String> {
    let failed = |e: DrawingAreaErrorKind<B::ErrorType>| format!("drawing the ROC plot: {e}");
    area.fill(&WHITE).map_err(failed)?;
    let mut chart = ChartBuilder::on(&area)
        .caption(format!("ROC, AUC = {auc:.4}"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_desc("false match rate")
        .y_desc("true match rate")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(failed)?;
    // chance: a dashed diagonal
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            4,
            RGBColor(170, 170, 170).stroke_width(1),
        ))
        .map_err(failed)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            RGBColor(21, 101, 192).stroke_width(3),
        ))
        .map_err(failed)?;
    area.present().map_err(failed)
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

    /// The PNG carries the axis text too: the strips under and left of the plot, where the
    /// labels go, hold dark text pixels, and the curve is drawn in its colour.
    #[test]
    fn the_png_plot_has_labelled_axes_and_the_curve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("roc.png");
        let scored = [
            pair(0.9, true),
            pair(0.6, true),
            pair(0.7, false),
            pair(0.2, false),
        ];
        write_roc(&path, &roc_points(&scored), 0.75).expect("plot written");
        let image = image::open(&path).expect("a PNG").to_rgb8();
        assert_eq!(image.dimensions(), PLOT_SIZE);
        let dark = |x0: u32, y0: u32, x1: u32, y1: u32| {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| image.get_pixel(x, y).0.iter().all(|&c| c < 100))
                .count()
        };
        let (w, h) = PLOT_SIZE;
        assert!(dark(60, h - 30, w, h) > 100, "x-axis title under the plot");
        assert!(
            dark(0, 60, 25, h - 60) > 100,
            "y-axis title left of the plot"
        );
        assert!(dark(0, 0, w, 40) > 100, "the caption with the AUC");
        let blue = image.pixels().filter(|p| p.0 == [21, 101, 192]).count();
        assert!(blue > 300, "the curve, {blue} pixels");
    }
}
