//! Reproducible pseudo-random unit vectors, for the benchmarks and tests that time or check
//! matching at sizes no photo set has (a xorshift: no seeded RNG crate needed).

use super::l2_normalize;

pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        // zero would stay zero
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-0.5, 0.5).
    pub fn next_centred(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    pub fn unit(&mut self, dims: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dims).map(|_| self.next_centred()).collect();
        l2_normalize(&mut v);
        v
    }

    /// A unit vector near `centre`: each value moved by up to `spread / 2`.
    pub fn near(&mut self, centre: &[f32], spread: f32) -> Vec<f32> {
        let mut v: Vec<f32> = centre
            .iter()
            .map(|c| c + spread * self.next_centred())
            .collect();
        l2_normalize(&mut v);
        v
    }
}
