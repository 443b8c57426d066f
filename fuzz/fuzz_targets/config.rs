//! Any text as a configuration file, loaded as `facelift serve` loads one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = facelift::Settings::from_toml_str(text);
    }
});
