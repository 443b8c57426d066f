//! Presentation attack detection inside the login decision: what a frame shows beyond its
//! identity (landmarks, the passive liveness score, a hash of the face), the judgement of a
//! challenge burst or a single frame, and the memory of faces already accepted (to refuse a
//! replay). The geometry itself is in `face::pad`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use crate::config::PadMode;
use crate::face::landmarks::Point;
use crate::face::pad::{
    BurstRefusal, BurstSignals, SAME_FRAME_BITS, Turn, face_hash, hash_distance, judge_burst,
};
use crate::face::{Engine, FaceError, Which};

/// A burst has at least this many frames with a face: a turn needs a start, a middle and
/// an end.
pub const MIN_BURST_FRAMES: usize = 3;
/// ... and at most this many frames in all (each costs an embedding).
pub const MAX_BURST_FRAMES: usize = 12;

/// What one frame of a presentation showed.
#[derive(Clone, Debug)]
pub struct FrameEvidence {
    pub embedding: Vec<f32>,
    /// the 68 landmarks of the best face, in the preprocessed frame
    pub landmarks: Vec<Point>,
    /// `fr_liveness`'s probability that the face is live, when the model runs
    pub liveness: Option<f32>,
    /// `face::pad::face_hash` of the best face
    pub hash: Option<u64>,
    pub faces_seen: usize,
}

/// Analyses one frame for a login: its best face, and what PAD needs of it.
pub fn examine(engine: &mut Engine, bytes: &[u8]) -> Result<FrameEvidence, FaceError> {
    let (analysis, frame) = engine.analyze_bytes_with_frame(bytes, Which::Best)?;
    let face = analysis.best().ok_or(FaceError::NoFace)?;
    let hash = landmark_box(&face.landmarks).and_then(|bbox| face_hash(&frame, bbox));
    Ok(FrameEvidence {
        embedding: face.embedding.clone(),
        landmarks: face.landmarks.clone(),
        liveness: face.liveness,
        hash,
        faces_seen: analysis.faces_seen,
    })
}

/// The box around the landmarks (in the frame they were found in).
fn landmark_box(points: &[Point]) -> Option<[f32; 4]> {
    let first = points.first()?;
    Some(points.iter().fold(
        [first[0], first[1], first[0], first[1]],
        |[x0, y0, x1, y1], p| [x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1])],
    ))
}

/// Why PAD refused a presentation.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum PadRefusal {
    #[error("{0}")]
    Burst(BurstRefusal),
    #[error("the picture does not look live")]
    NotLive,
    #[error("these frames were sent before")]
    Replayed,
    #[error("the frames do not all show the same enrolled person")]
    MixedFaces,
}

impl PadRefusal {
    /// A short name for the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            PadRefusal::Burst(BurstRefusal::TooFewFrames) => "too_few_frames",
            PadRefusal::Burst(BurstRefusal::TurnNotSeen) => "turn_not_seen",
            PadRefusal::Burst(BurstRefusal::Flat) => "flat",
            PadRefusal::NotLive => "not_live",
            PadRefusal::Replayed => "replayed",
            PadRefusal::MixedFaces => "mixed_faces",
        }
    }
}

/// Every signal of one attempt, for the audit log (`Display` gives `key=value` pairs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PadSignals {
    pub mode: PadMode,
    pub turns: Vec<Turn>,
    /// frames uploaded, and of those with a face
    pub frames_sent: usize,
    pub burst: Option<BurstSignals>,
    /// the lower quartile and the lowest liveness score over the frames
    pub liveness_q25: Option<f32>,
    pub liveness_min: Option<f32>,
    /// frames whose face was accepted before
    pub replayed_frames: usize,
    /// what PAD refused, when it did
    pub refusal: Option<PadRefusal>,
}

impl fmt::Display for PadSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pad={}", self.mode.as_str())?;
        if !self.turns.is_empty() {
            let turns: Vec<&str> = self
                .turns
                .iter()
                .map(|t| match t {
                    Turn::Left => "left",
                    Turn::Right => "right",
                })
                .collect();
            write!(f, " turns={}", turns.join(","))?;
        }
        write!(f, " frames={}", self.frames_sent)?;
        if let Some(burst) = &self.burst {
            write!(
                f,
                " faces={} yaw_travel={:.3}",
                burst.frames, burst.yaw_travel
            )?;
            if let Some(residual) = burst.planar_residual {
                write!(f, " planar_residual={residual:.4}")?;
            }
            write!(f, " replayed={}", self.replayed_frames)?;
        }
        if let (Some(quartile), Some(min)) = (self.liveness_q25, self.liveness_min) {
            write!(f, " liveness_q25={quartile:.3} liveness_min={min:.3}")?;
        }
        if let Some(refusal) = self.refusal {
            write!(f, " refused={}", refusal.as_str())?;
        }
        Ok(())
    }
}

/// The thresholds PAD judges with.
#[derive(Clone, Copy, Debug)]
pub struct PadRules {
    pub mode: PadMode,
    /// whether the preprocessing mirrors frames (it flips the direction of a turn)
    pub mirrored: bool,
    /// the lowest lower-quartile liveness score the frames may have: a quartile, so that a
    /// frame or two blurred by the turn do not refuse a live person (in the Chromium test one
    /// frame of ten scores 0.32, the rest above 0.9), while a burst shown on a screen, soft
    /// throughout, is refused (5 of 7 in `facelift pad-eval`'s 7th attack; 3 of 7 with the
    /// median)
    pub liveness_min: f32,
}

/// Judges the frames of a presentation (a burst doing `asked`, or one frame when `asked` is
/// `None`) on everything but identity: the turns and depth of a burst, every frame's liveness,
/// and, for a burst, whether its faces were accepted before.
pub fn judge(
    rules: &PadRules,
    frames: &[FrameEvidence],
    asked: Option<&[Turn]>,
    seen: &SeenFaces,
    now: i64,
) -> PadSignals {
    let mut scores: Vec<f32> = frames.iter().filter_map(|f| f.liveness).collect();
    scores.sort_by(f32::total_cmp);
    let mut signals = PadSignals {
        mode: rules.mode,
        turns: asked.map(<[Turn]>::to_vec).unwrap_or_default(),
        frames_sent: frames.len(),
        liveness_q25: scores.get(scores.len() / 4).copied(),
        liveness_min: scores.first().copied(),
        ..PadSignals::default()
    };
    if rules.mode == PadMode::Off && asked.is_none() {
        return signals;
    }
    let mut refusal = None;
    if let Some(asked) = asked {
        let landmarks: Vec<Vec<Point>> = frames.iter().map(|f| f.landmarks.clone()).collect();
        let (burst, verdict) = judge_burst(&landmarks, asked, rules.mirrored);
        signals.burst = Some(burst);
        let hashes: Vec<u64> = frames.iter().filter_map(|f| f.hash).collect();
        signals.replayed_frames = seen.count_seen(&hashes, now);
        refusal = if frames.len() < MIN_BURST_FRAMES {
            Some(PadRefusal::Burst(BurstRefusal::TooFewFrames))
        } else {
            verdict.err().map(PadRefusal::Burst)
        };
        // a replay shows at least half of its frames again; a live person's next login
        // may repeat a still moment, not the turn
        if refusal.is_none() && 2 * signals.replayed_frames >= frames.len() {
            refusal = Some(PadRefusal::Replayed);
        }
    }
    if refusal.is_none()
        && signals
            .liveness_q25
            .is_some_and(|score| score < rules.liveness_min)
    {
        refusal = Some(PadRefusal::NotLive);
    }
    signals.refusal = refusal;
    signals
}

/// The face hashes of accepted bursts, kept for `keep_secs` (and at most `MAX_SEEN`), so
/// that frames sent again are known.
pub struct SeenFaces {
    keep_secs: i64,
    hashes: Mutex<VecDeque<(i64, u64)>>,
}

/// About a day of logins in a large building (at 12 frames a login).
const MAX_SEEN: usize = 200_000;

impl SeenFaces {
    pub fn new(keep_secs: u64) -> Self {
        Self {
            keep_secs: keep_secs as i64,
            hashes: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(i64, u64)>> {
        self.hashes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many of `hashes` are within `SAME_FRAME_BITS` of a remembered one.
    pub fn count_seen(&self, hashes: &[u64], now: i64) -> usize {
        let mut remembered = self.lock();
        while remembered
            .front()
            .is_some_and(|(at, _)| now - at > self.keep_secs)
        {
            remembered.pop_front();
        }
        hashes
            .iter()
            .filter(|&&hash| {
                remembered
                    .iter()
                    .any(|&(_, old)| hash_distance(hash, old) <= SAME_FRAME_BITS)
            })
            .count()
    }

    pub fn remember(&self, hashes: impl IntoIterator<Item = u64>, now: i64) {
        self.remember_each(hashes.into_iter().map(|hash| (now, hash)));
    }

    /// Remembers hashes each with its own time, oldest first (as the store gives them back).
    pub fn remember_each(&self, faces: impl IntoIterator<Item = (i64, u64)>) {
        let mut remembered = self.lock();
        for face in faces {
            if remembered.len() >= MAX_SEEN {
                remembered.pop_front();
            }
            remembered.push_back(face);
        }
    }

    pub fn keep_secs(&self) -> i64 {
        self.keep_secs
    }

    /// Forgets every face: for an evaluation that plays the same photos as several
    /// independent live presentations.
    pub fn forget_all(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faces_are_remembered_for_a_while_and_near_hashes_count_as_seen() {
        let seen = SeenFaces::new(100);
        seen.remember([0b1111, 0xFFFF_0000], 10);
        // 4 bits off is the same frame; 5 is not
        assert_eq!(seen.count_seen(&[0b1111 ^ 0b1111_0000, 0x1F << 40], 20), 1);
        assert_eq!(seen.count_seen(&[0xFFFF_0000 ^ 0x1F], 20), 0);
        assert_eq!(seen.count_seen(&[0b1111], 111), 0, "forgotten after 100 s");
    }

    #[test]
    fn the_signals_read_as_key_value_pairs() {
        let signals = PadSignals {
            mode: PadMode::Challenge,
            turns: vec![Turn::Left, Turn::Right],
            frames_sent: 8,
            burst: Some(BurstSignals {
                frames: 8,
                yaw_travel: 0.31,
                planar_residual: Some(0.0123),
            }),
            liveness_q25: Some(0.95),
            liveness_min: Some(0.9),
            replayed_frames: 0,
            refusal: Some(PadRefusal::Burst(BurstRefusal::Flat)),
        };
        assert_eq!(
            signals.to_string(),
            "pad=challenge turns=left,right frames=8 faces=8 yaw_travel=0.310 \
             planar_residual=0.0123 replayed=0 liveness_q25=0.950 liveness_min=0.900 refused=flat"
        );
    }
}
