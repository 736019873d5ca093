//! Fuzz target: arbitrary text as a settings file — loading must never
//! panic: it gives settings that validate, or an error.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(settings) = myc_config::load_str(text) {
        assert!(settings.validate().is_ok());
    }
    let _ = myc_rollout::Plan::parse(text);
});
