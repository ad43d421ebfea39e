//! Unit and property tests of path and host normalization.

use super::*;
use proptest::prelude::*;

fn norm(path: &str) -> Result<String, PathError> {
    normalize_path(path, PathPolicy::default()).map(Cow::into_owned)
}

fn norm_with(path: &str, merge_slashes: bool, escaped_slashes: EscapedSlashes) -> Result<String, PathError> {
    let policy = PathPolicy {
        merge_slashes,
        escaped_slashes,
    };
    normalize_path(path, policy).map(Cow::into_owned)
}

#[test]
fn plain_paths_are_borrowed_unchanged() {
    for path in [
        "/",
        "/api/orders",
        "/a.b/c-d_e~f",
        "/x/",
        "/a;b=c",
        "*",
        "/.well-known/x",
        "/a%20b",
    ] {
        let out = normalize_path(path, PathPolicy::default()).unwrap();
        assert!(matches!(out, Cow::Borrowed(_)), "{path}");
        assert_eq!(out, path);
    }
}

#[test]
fn dot_segments_are_removed() {
    let cases = [
        ("/hello/../api/orders", "/api/orders"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/..", "/"),
        ("/../x", "/x"),
        ("/../../x/../../y", "/y"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/.../x", "/.../x"),
        ("/..x/y", "/..x/y"),
    ];
    for (input, want) in cases {
        assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
    }
}

#[test]
fn unreserved_escapes_are_decoded_others_upper_cased() {
    assert_eq!(norm("/x/%2e%2e/api/orders").as_deref(), Ok("/api/orders"));
    assert_eq!(norm("/x/%2E%2e/api").as_deref(), Ok("/api"));
    assert_eq!(norm("/%41%7a%2D%5f%7E").as_deref(), Ok("/Az-_~"));
    assert_eq!(norm("/a%20b%3f").as_deref(), Ok("/a%20b%3F"));
    // Double encoding is decoded once: `%25` is not unreserved.
    assert_eq!(norm("/x/%252e%252e/api").as_deref(), Ok("/x/%252e%252e/api"));
}

#[test]
fn slashes_are_merged_unless_turned_off() {
    assert_eq!(norm("//api/orders").as_deref(), Ok("/api/orders"));
    assert_eq!(norm("/a///b//").as_deref(), Ok("/a/b/"));
    assert_eq!(
        norm_with("//api//x", false, EscapedSlashes::Reject).as_deref(),
        Ok("//api//x")
    );
    assert_eq!(
        norm_with("/a//../b", false, EscapedSlashes::Reject).as_deref(),
        Ok("/a/b")
    );
}

#[test]
fn escaped_slashes_follow_the_policy() {
    for path in ["/hello/..%2fapi/orders", "/a%2Fb", "/a%5cb"] {
        assert_eq!(norm(path), Err(PathError::EscapedSlash), "{path}");
    }
    assert_eq!(
        norm_with("/hello/..%2fapi/orders", true, EscapedSlashes::Decode).as_deref(),
        Ok("/api/orders")
    );
    assert_eq!(norm_with("/a%5cb", true, EscapedSlashes::Decode).as_deref(), Ok("/a/b"));
    assert_eq!(
        norm_with("/hello/..%2fapi", true, EscapedSlashes::Keep).as_deref(),
        Ok("/hello/..%2Fapi")
    );
}

#[test]
fn malformed_paths_are_refused() {
    assert_eq!(norm("/a%2"), Err(PathError::InvalidEscape));
    assert_eq!(norm("/a%zz"), Err(PathError::InvalidEscape));
    assert_eq!(norm("/a%"), Err(PathError::InvalidEscape));
    assert_eq!(norm("/a\\..\\api"), Err(PathError::Backslash));
    assert_eq!(norm("/a%00b"), Err(PathError::Nul));
    assert_eq!(norm("api"), Err(PathError::NotAbsolute));
    assert_eq!(norm("/x/..;/api"), Err(PathError::DotSegmentWithParameters));
    assert_eq!(norm("/x/.;a=b/api"), Err(PathError::DotSegmentWithParameters));
    assert_eq!(norm("/x/%2e%2e;/api"), Err(PathError::DotSegmentWithParameters));
    for path in ["/;/api/secret", "/;x/api", "/x/;/api", "/api/;", "/%3b/x"] {
        let refused = norm(path) == Err(PathError::EmptySegmentWithParameters);
        // `%3b` stays encoded: not a parameter to anyone.
        assert_eq!(refused, !path.contains("%3b"), "{path}");
    }
    // Parameters on ordinary segments are kept.
    assert_eq!(norm("/x;v=1/./y").as_deref(), Ok("/x;v=1/y"));
}

#[test]
fn hosts_are_checked_and_lose_one_trailing_dot() {
    let ok = [
        ("admin.example.com", "admin.example.com"),
        ("admin.example.com.", "admin.example.com"),
        ("admin.example.com.:8080", "admin.example.com:8080"),
        ("Admin.Example.COM", "Admin.Example.COM"),
        ("10.0.0.1:80", "10.0.0.1:80"),
        ("[::1]:8080", "[::1]:8080"),
        ("[2001:db8::1]", "[2001:db8::1]"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ];
    for (input, want) in ok {
        assert_eq!(normalize_host(input).as_deref(), Ok(want), "{input}");
    }
    let bad = [
        "",
        ".",
        "admin.example.com..x:",
        "a b.com",
        "a.com:80x",
        "a.com:",
        "a.com:123456",
        "[::1",
        "[zz]:80",
        "[::1]x",
        "a/b",
        "a@b",
        "a.com:80:90",
        "a\tb",
        "a..",
        "a..b",
        ".a",
        "..",
    ];
    for input in bad {
        assert_eq!(normalize_host(input), Err(InvalidHost), "{input:?}");
    }
}

#[test]
fn parameters_are_dropped_for_matching() {
    assert_eq!(without_parameters("/api;v=1/orders;x"), "/api/orders");
    assert_eq!(without_parameters("/api/orders"), "/api/orders");
    assert!(matches!(without_parameters("/a/b"), Cow::Borrowed(_)));
}

/// Path characters, weighted towards the ones normalization acts on.
fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2f".to_string()),
        Just("%5C".to_string()),
        Just("%41".to_string()),
        Just("%25".to_string()),
        Just(";".to_string()),
        Just("%".to_string()),
        "[a-z0-9~_-]{1,3}",
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|pieces| format!("/{}", pieces.concat()))
}

fn policies() -> impl Strategy<Value = PathPolicy> {
    (
        any::<bool>(),
        prop_oneof![
            Just(EscapedSlashes::Reject),
            Just(EscapedSlashes::Keep),
            Just(EscapedSlashes::Decode)
        ],
    )
        .prop_map(|(merge_slashes, escaped_slashes)| PathPolicy {
            merge_slashes,
            escaped_slashes,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Normalizing twice changes nothing, and the result never has a `.`
    /// or `..` segment (raw or encoded), nor `//` when slashes are merged.
    #[test]
    fn normalization_is_idempotent_and_leaves_no_dot_segment(path in path_strategy(), policy in policies()) {
        if let Ok(once) = normalize_path(&path, policy) {
            let twice = normalize_path(&once, policy).expect("a normalized path normalizes");
            prop_assert_eq!(&twice, &once);
            prop_assert!(once.starts_with('/'));
            for segment in once.split('/') {
                let lower = segment.to_ascii_lowercase();
                prop_assert!(!matches!(lower.as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."), "{} from {}", once, path);
            }
            if policy.merge_slashes {
                prop_assert!(!once.contains("//"), "{} from {}", once, path);
            }
        }
    }
}
