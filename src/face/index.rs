//! The 1:N search over every enrolled template: one contiguous matrix of int8 codes scanned with
//! SIMD, then the few people who could still be first or second scored again exactly in f32.
//!
//! Why int8: at 100,000 templates of 512 values an f32 matrix is 205 MB, and a scan of it is
//! bound by memory bandwidth (about 20 ms a query here); int8 codes are a quarter of that.
//! The coarse score's error is bounded (see `error_bound`), so re-scoring
//! everyone within twice that bound of the second-best coarse score gives exactly the result
//! of an exact scan: the same best person, runner-up and similarities.

use pulp::{Arch, Simd, WithSimd};

/// A row's values are scaled so that the largest magnitude becomes this code.
const CODE_MAX: f32 = 127.0;
/// Past this many candidates after the coarse scan the top ones by coarse score are re-scored
/// (only a gallery of near-identical templates gets here).
const MAX_CANDIDATES: usize = 4096;

/// Which person (an index into the gallery's people) each row belongs to, and its codes.
#[derive(Clone, Debug, Default)]
pub struct MatchIndex {
    dims: usize,
    codes: Vec<i8>,
    /// per row: the value one code step stands for
    steps: Vec<f32>,
    owners: Vec<u32>,
    /// the largest of `steps` (or above it after a removal): kept, not found again each query
    largest_step: f32,
}

/// A person worth scoring exactly, with their coarse score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub owner: usize,
    pub coarse: f32,
}

struct Quantized {
    codes: Vec<i8>,
    step: f32,
}

fn quantize(vector: &[f32]) -> Quantized {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    let largest = vector.iter().fold(0.0f32, |m, x| m.max(x.abs())) / norm.max(f32::MIN_POSITIVE);
    if !(largest > 0.0 && largest.is_finite()) {
        return Quantized {
            codes: vec![0; vector.len()],
            step: 0.0,
        };
    }
    let step = largest / CODE_MAX;
    let scale = 1.0 / (norm * step);
    let codes = vector
        .iter()
        .map(|x| (x * scale).round().clamp(-CODE_MAX, CODE_MAX) as i8)
        .collect();
    Quantized { codes, step }
}

impl MatchIndex {
    /// Makes room for `rows` more templates of `dims` values.
    pub fn reserve(&mut self, rows: usize, dims: usize) {
        self.codes.reserve(rows * dims);
        self.steps.reserve(rows);
        self.owners.reserve(rows);
    }

    pub fn rows(&self) -> usize {
        self.owners.len()
    }

    /// Bytes held by the index itself (the exact templates are the gallery's).
    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity()
            + self.steps.capacity() * size_of::<f32>()
            + self.owners.capacity() * size_of::<u32>()
    }

    /// Adds a template of person `owner`; a template of another length than the first one's is
    /// not indexed (it could never match a probe of the model in use), and false says so.
    pub fn push(&mut self, owner: usize, embedding: &[f32]) -> bool {
        if self.owners.is_empty() {
            self.dims = embedding.len();
        }
        if embedding.len() != self.dims || embedding.is_empty() {
            return false;
        }
        let Quantized { codes, step } = quantize(embedding);
        self.codes.extend_from_slice(&codes);
        self.steps.push(step);
        self.owners.push(owner as u32);
        self.largest_step = self.largest_step.max(step);
        true
    }

    /// A person was inserted at `at` in the gallery's order: later people move one down.
    pub fn person_inserted(&mut self, at: usize) {
        self.owners
            .iter_mut()
            .filter(|o| **o as usize >= at)
            .for_each(|o| *o += 1);
    }

    /// Forgets the rows of the person at `at`; later people move one up.
    pub fn person_removed(&mut self, at: usize) {
        let dims = self.dims;
        let mut kept = 0;
        for row in 0..self.owners.len() {
            let owner = self.owners[row] as usize;
            if owner == at {
                continue;
            }
            if kept != row {
                self.codes
                    .copy_within(row * dims..(row + 1) * dims, kept * dims);
                self.steps[kept] = self.steps[row];
            }
            self.owners[kept] = if owner > at { owner - 1 } else { owner } as u32;
            kept += 1;
        }
        self.codes.truncate(kept * dims);
        self.steps.truncate(kept);
        self.owners.truncate(kept);
    }

    /// The people who may be first or second by exact cosine with `probe`, best coarse first.
    pub fn candidates(&self, probe: &[f32], people: usize) -> Vec<Candidate> {
        if probe.len() != self.dims || self.owners.is_empty() {
            return Vec::new();
        }
        let probe = quantize(probe);
        let mut best = vec![f32::NEG_INFINITY; people];
        Arch::new().dispatch(Scan {
            index: self,
            probe: &probe,
            best: &mut best,
        });
        let bound = error_bound(self.dims, self.largest_step, probe.step);
        let floor = second_best(&best) - 2.0 * bound;
        // only the few people near the top are collected, not one entry per person
        let mut ranked: Vec<Candidate> = best
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_finite() && **s >= floor)
            .map(|(owner, &coarse)| Candidate { owner, coarse })
            .collect();
        ranked.sort_by(|a, b| b.coarse.total_cmp(&a.coarse));
        ranked.truncate(MAX_CANDIDATES);
        ranked
    }
}

/// The second-best coarse score (the best when there is one person).
fn second_best(scores: &[f32]) -> f32 {
    let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &score in scores {
        if score > first {
            second = first;
            first = score;
        } else if score > second {
            second = score;
        }
    }
    if second.is_finite() { second } else { first }
}

/// How far a coarse score can be from the exact cosine of the two unit vectors. With
/// u = su*cu + e and p = sp*cp + f (|e_i| <= su/2, |f_i| <= sp/2, and |u|_1, |p|_1 <= sqrt(d)):
/// |u.p - su*sp*cu.cp| = |u.f + e.p - e.f| <= sqrt(d)*(su + sp)/2 + d*su*sp/4.
fn error_bound(dims: usize, row_step: f32, probe_step: f32) -> f32 {
    let d = dims as f32;
    d.sqrt() * (row_step + probe_step) / 2.0 + d * row_step * probe_step / 4.0
}

/// Integer dot products of every row with the probe, each person's best kept as it goes (one
/// pass over memory); compiled for the best instruction set this CPU has (AVX2 where present),
/// chosen at run time by `pulp`.
struct Scan<'a> {
    index: &'a MatchIndex,
    probe: &'a Quantized,
    best: &'a mut [f32],
}

/// The integer dot product of a row's codes with the probe's.
#[inline(always)]
fn dot_codes(row: &[i8], probe: &[i8]) -> i32 {
    let split = probe.len() - probe.len() % LANES;
    let (probe_head, probe_tail) = probe.split_at(split);
    let (head, tail) = row.split_at(split);
    let mut lanes = [0i32; LANES];
    for (a, b) in head.chunks_exact(LANES).zip(probe_head.chunks_exact(LANES)) {
        for i in 0..LANES {
            lanes[i] += i32::from(a[i]) * i32::from(b[i]);
        }
    }
    let rest: i32 = tail
        .iter()
        .zip(probe_tail)
        .map(|(a, b)| i32::from(*a) * i32::from(*b))
        .sum();
    lanes.iter().sum::<i32>() + rest
}

/// Independent accumulators, so the compiler can keep them in vector registers.
const LANES: usize = 32;

impl WithSimd for Scan<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let index = self.index;
        let rows = index.codes.chunks_exact(index.dims);
        for ((row, step), owner) in rows.zip(&index.steps).zip(&index.owners) {
            let score = dot_codes(row, &self.probe.codes) as f32 * step * self.probe.step;
            if let Some(best) = self.best.get_mut(*owner as usize) {
                *best = best.max(score);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        crate::face::synthetic::Xorshift::new(seed).unit(dims)
    }

    #[test]
    fn the_coarse_score_stays_within_its_bound() {
        for dims in [2, 7, 512, 2622] {
            let mut index = MatchIndex::default();
            for seed in 0..50 {
                assert!(index.push(seed as usize, &unit(seed, dims)));
            }
            let probe = unit(999, dims);
            let q = quantize(&probe);
            let rows = index.codes.chunks_exact(dims);
            for (row, codes) in rows.enumerate() {
                let exact = crate::face::cosine(&unit(row as u64, dims), &probe);
                let approx = dot_codes(codes, &q.codes) as f32 * index.steps[row] * q.step;
                let bound = error_bound(dims, index.steps[row], q.step);
                assert!(
                    (exact - approx).abs() <= bound,
                    "{dims}-d row {row}: {exact} vs {approx}, bound {bound}"
                );
            }
        }
    }

    #[test]
    fn removing_a_person_keeps_the_others_rows_and_renumbers_them() {
        let mut index = MatchIndex::default();
        for (owner, seed) in [(0, 1), (1, 2), (0, 3), (2, 4), (1, 5)] {
            index.push(owner, &unit(seed, 16));
        }
        index.person_removed(1);
        assert_eq!(index.owners, vec![0, 0, 1]);
        assert_eq!(index.rows(), 3);
        let candidates = index.candidates(&unit(4, 16), 2);
        assert_eq!(
            candidates[0].owner, 1,
            "the person who had seed 4 is now number 1"
        );
        index.person_inserted(1);
        assert_eq!(index.owners, vec![0, 0, 2]);
    }

    #[test]
    fn a_probe_of_another_length_or_an_empty_index_finds_nobody() {
        let mut index = MatchIndex::default();
        assert!(index.candidates(&unit(1, 8), 0).is_empty());
        index.push(0, &unit(1, 8));
        assert!(!index.push(1, &unit(2, 9)), "another model's template");
        assert!(index.candidates(&unit(1, 9), 1).is_empty());
        assert_eq!(index.candidates(&unit(1, 8), 1).len(), 1);
    }
}
