//! Finding and masking card numbers in a body, byte by byte (digits and
//! separators are ASCII, so UTF-8 text is never split).

/// Fewest and most digits of a card number.
const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;
/// Digits kept at the end of a masked number.
const KEPT: usize = 4;

/// Whether the ASCII digits of `digits` (other bytes are skipped) pass the
/// Luhn check.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &b in digits.iter().rev().filter(|b| b.is_ascii_digit()) {
        let mut d = u32::from(b - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum.is_multiple_of(10)
}

/// The digit groups of the run starting at `start` (a digit): digits,
/// joined by single spaces or dashes that have a digit on both sides.
/// Each group is `start..end`.
fn groups(body: &[u8], start: usize) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut j = start;
    loop {
        let from = j;
        while j < body.len() && body[j].is_ascii_digit() {
            j += 1;
        }
        groups.push((from, j));
        let joined = matches!(body.get(j), Some(b' ' | b'-')) && body.get(j + 1).is_some_and(u8::is_ascii_digit);
        if !joined {
            return groups;
        }
        j += 1;
    }
}

/// The card numbers among the groups of one run, as byte ranges. From each
/// group on, the longest span of whole groups with 13–19 digits that passes
/// Luhn is a card; the search goes on after it. So two numbers separated by
/// a single space are both found, and a group of more than 19 digits (an
/// ID, not a card) is never one.
fn cards(body: &[u8], groups: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut s = 0;
    while s < groups.len() {
        let mut digits = 0;
        let mut best = None;
        for (e, &(from, to)) in groups.iter().enumerate().skip(s) {
            digits += to - from;
            if digits > MAX_DIGITS {
                break;
            }
            if digits >= MIN_DIGITS && luhn_valid(&body[groups[s].0..to]) {
                best = Some(e);
            }
        }
        match best {
            Some(e) => {
                found.push((groups[s].0, groups[e].1));
                s = e + 1;
            }
            None => s += 1,
        }
    }
    found
}

/// `span` with every digit but the last four replaced by `*`.
fn masked(span: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let digits = span.iter().filter(|b| b.is_ascii_digit()).count();
    let mut seen = 0;
    span.iter().map(move |&b| {
        if !b.is_ascii_digit() {
            return b;
        }
        seen += 1;
        if seen + KEPT > digits { b } else { b'*' }
    })
}

/// Whether the digits `from..to` outside a JSON string are a whole JSON
/// integer: no sign, fraction or exponent around them. Only such a token
/// can be a card written as a bare number (and it is quoted when masked).
fn whole_integer(body: &[u8], from: usize, to: usize) -> bool {
    let before = from.checked_sub(1).and_then(|i| body.get(i));
    let after = body.get(to);
    !matches!(before, Some(b'-' | b'+' | b'.')) && !matches!(after, Some(b'.' | b'e' | b'E'))
}

/// Mask every card number in `body`. `json`: the body is JSON, so a card
/// written as a bare number outside a string becomes a string (a number
/// with a sign, fraction or exponent is left alone). Returns the new body,
/// `None` if nothing was masked, and the count of masked numbers.
pub fn mask(body: &[u8], json: bool) -> (Option<Vec<u8>>, usize) {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut count = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if json && in_string && b == b'\\' {
            i += 2;
            continue;
        }
        if json && b == b'"' {
            in_string = !in_string;
            i += 1;
            continue;
        }
        if !b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let groups = groups(body, i);
        let run_end = groups.last().map_or(i + 1, |&(_, to)| to);
        let bare = json && !in_string;
        for (from, to) in cards(body, &groups) {
            let quote = bare && groups.len() == 1;
            if quote && !whole_integer(body, from, to) {
                continue;
            }
            let buf = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 2));
            buf.extend_from_slice(&body[copied..from]);
            if quote {
                buf.push(b'"');
            }
            buf.extend(masked(&body[from..to]));
            if quote {
                buf.push(b'"');
            }
            copied = to;
            count += 1;
        }
        i = run_end;
    }
    if let Some(buf) = out.as_mut() {
        buf.extend_from_slice(&body[copied..]);
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked_text(text: &str) -> (String, usize) {
        let (out, n) = mask(text.as_bytes(), false);
        (
            String::from_utf8(out.unwrap_or_else(|| text.as_bytes().to_vec())).unwrap(),
            n,
        )
    }

    #[test]
    fn luhn() {
        for valid in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "4222222222222",
            "0",
        ] {
            assert!(luhn_valid(valid.as_bytes()), "{valid}");
        }
        for invalid in ["4111111111111112", "5555555555554440", "1"] {
            assert!(!luhn_valid(invalid.as_bytes()), "{invalid}");
        }
        assert!(luhn_valid(b"4111 1111-1111 1111"), "separators are skipped");
    }

    #[test]
    fn runs_and_groups() {
        assert_eq!(masked_text("4111111111111111"), ("************1111".into(), 1));
        assert_eq!(
            masked_text("x4111-1111-1111-1111y"),
            ("x****-****-****-1111y".into(), 1)
        );
        // Two separators in a row end the run.
        assert_eq!(masked_text("4111  1111 1111 1111").1, 0);
        assert_eq!(masked_text("4111--1111-1111-1111").1, 0);
        // Two cards one space apart are two cards.
        assert_eq!(
            masked_text("4111111111111111 5555555555554444"),
            ("************1111 ************4444".into(), 2)
        );
        assert_eq!(
            masked_text("4111 1111 1111 1111 5555 5555 5555 4444"),
            ("**** **** **** 1111 **** **** **** 4444".into(), 2)
        );
        // A trailing separator is not part of the number.
        assert_eq!(
            masked_text("4111111111111111- and"),
            ("************1111- and".into(), 1)
        );
        // A longer digit string is an ID, not a card, even if a part passes.
        assert_eq!(masked_text("41111111111111110000").1, 0);
        // Too short.
        assert_eq!(masked_text("411111111111").1, 0);
        assert_eq!(masked_text("4222222222222"), ("*********2222".into(), 1));
        assert_eq!(
            masked_text("6011111111111117000"),
            ("***************7000".into(), 1),
            "19 digits"
        );
    }

    #[test]
    fn json_bare_numbers_become_strings() {
        let (out, n) = mask(br#"{"a":4111111111111111,"b":[5555555555554444]}"#, true);
        assert_eq!(n, 2);
        assert_eq!(
            out.as_deref(),
            Some(&br#"{"a":"************1111","b":["************4444"]}"#[..])
        );
        // Signs, fractions and exponents are not cards.
        for keep in [
            &br#"{"a":-4111111111111111}"#[..],
            br#"{"a":4111111111111111.5}"#,
            br#"{"a":4111111111111111e3}"#,
        ] {
            assert_eq!(mask(keep, true), (None, 0), "{}", String::from_utf8_lossy(keep));
        }
        // Inside strings (escapes included) digits are masked in place.
        let (out, n) = mask(br#"{"k\"4111111111111111":"\\4111111111111111"}"#, true);
        assert_eq!(n, 2);
        assert_eq!(
            out.as_deref(),
            Some(&br#"{"k\"************1111":"\\************1111"}"#[..])
        );
        // Outside JSON mode bare numbers are masked in place.
        assert_eq!(
            mask(b"4111111111111111", false).0.as_deref(),
            Some(&b"************1111"[..])
        );
    }
}
