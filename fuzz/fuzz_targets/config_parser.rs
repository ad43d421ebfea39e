//! The config parser on arbitrary text: it must return a config or a located
//! error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = sluice::config::Config::parse(std::path::Path::new("fuzz.toml"), text)
    {
        // Errors must render (file, line, key, message) without panicking.
        let _ = e.to_string();
    }
});
