//! Path and host normalization on arbitrary input: never a panic; a
//! normalized path normalizes to itself, starts with `/` and has no `.` or
//! `..` segment (nor `//` when slashes are merged); a normalized host is
//! accepted again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::normalize::{EscapedSlashes, PathPolicy, normalize_host, normalize_path};

fuzz_target!(|input: (u8, &str)| {
    let (flags, text) = input;
    let policy = PathPolicy {
        merge_slashes: flags & 1 == 0,
        escaped_slashes: match (flags >> 1) % 3 {
            0 => EscapedSlashes::Reject,
            1 => EscapedSlashes::Keep,
            _ => EscapedSlashes::Decode,
        },
    };
    if let Ok(once) = normalize_path(text, policy)
        && once != "*"
    {
        assert!(once.starts_with('/'));
        assert_eq!(normalize_path(&once, policy).as_deref(), Ok(once.as_ref()));
        assert!(once.split('/').all(|s| s != "." && s != ".."), "{once}");
        assert!(!policy.merge_slashes || !once.contains("//"), "{once}");
    }
    if let Ok(host) = normalize_host(text) {
        assert_eq!(normalize_host(&host).as_deref(), Ok(host.as_ref()));
    }
});
