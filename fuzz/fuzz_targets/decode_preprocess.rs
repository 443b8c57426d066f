//! Any bytes as an uploaded image: the header check, decoding at the working size, and the
//! preprocessing every login frame goes through. Errors are fine; a panic, a hang or an
//! allocation past libFuzzer's limit is a finding.
#![no_main]

use facelift::face::decode::{self, DecodeLimits};
use facelift::face::preprocess::{Preprocess, preprocess};
use libfuzzer_sys::fuzz_target;

/// A camera frame's worth (1 Mpx): bigger claims are refused from the header, as a login
/// frame's are by `web.login_max_pixels`, and keep the fuzzer fast.
const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 1024 * 1024,
};

fuzz_target!(|bytes: &[u8]| {
    if decode::check_header(bytes, LIMITS).is_err() {
        return;
    }
    let settings = Preprocess::default();
    if let Ok(image) = decode::decode_for_size(bytes, LIMITS, settings.max_side) {
        let prepared = preprocess(image, &settings);
        assert!(prepared.image.width() <= settings.max_side.max(1));
        assert!(prepared.image.height() <= settings.max_side.max(1));
    }
});
