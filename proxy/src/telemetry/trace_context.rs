//! W3C Trace Context (`traceparent` / `tracestate`): continue the client's
//! trace with a new span id for this hop, or start a trace when the client
//! sent none (or an invalid one), and hand the result to the upstream.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// This hop's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The span id sluice gives its own hop (the upstream's parent).
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceContext {
    /// Continue the trace in `headers` or start one, and rewrite
    /// `traceparent` for the upstream. `tracestate` is kept as it came when
    /// the parent is valid, and dropped otherwise (W3C §3.3).
    pub fn propagate(headers: &mut HeaderMap) -> TraceContext {
        let parent = headers.get(&TRACEPARENT).and_then(|v| parse(v.as_bytes()));
        let mut rng = rand::rng();
        let context = match parent {
            Some((trace_id, flags)) => TraceContext {
                trace_id,
                span_id: nonzero(&mut rng),
                flags,
            },
            None => {
                headers.remove(&TRACESTATE);
                TraceContext {
                    trace_id: nonzero(&mut rng),
                    span_id: nonzero(&mut rng),
                    flags: 0x01,
                }
            }
        };
        // Exactly as long as its capacity, so `Bytes` takes the buffer over
        // without a copy or a second allocation.
        if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(context.traceparent_bytes())) {
            headers.insert(TRACEPARENT.clone(), value);
        }
        context
    }

    /// `00-<trace-id>-<span-id>-<flags>`.
    pub fn traceparent(&self) -> String {
        // Hex digits and dashes only: always UTF-8.
        String::from_utf8(self.traceparent_bytes()).unwrap_or_default()
    }

    fn traceparent_bytes(&self) -> Vec<u8> {
        let mut out = vec![b'-'; TRACEPARENT_LEN];
        out[..2].copy_from_slice(b"00");
        hex_into(&mut out[3..35], &self.trace_id);
        hex_into(&mut out[36..52], &self.span_id);
        hex_into(&mut out[53..], &[self.flags]);
        out
    }

    pub fn trace_id_hex(&self) -> String {
        let mut out = vec![0; 32];
        hex_into(&mut out, &self.trace_id);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `00-` + 32 + `-` + 16 + `-` + 2.
const TRACEPARENT_LEN: usize = 55;

/// Random bytes, not all zero (an all-zero id is invalid), from the
/// thread's CSPRNG.
fn nonzero<const N: usize>(rng: &mut impl rand::RngCore) -> [u8; N] {
    loop {
        let mut bytes = [0u8; N];
        rng.fill_bytes(&mut bytes);
        if bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
}

/// Write `bytes` as lower-case hex into `out` (twice as long), in place:
/// this runs per request.
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// Trace id and flags of a valid `traceparent`: version `00` exactly, or a
/// later version with the same prefix (W3C §4.3); lower-case hex; ids not
/// all zero.
fn parse(value: &[u8]) -> Option<([u8; 16], u8)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.splitn(5, '-');
    let version = parts.next()?;
    let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    let valid_version = version.len() == 2 && version != "ff" && is_lower_hex(version);
    if !valid_version || (version == "00" && rest.is_some()) {
        return None;
    }
    let trace_id: [u8; 16] = unhex(trace)?;
    let parent_id: [u8; 8] = unhex(parent)?;
    let [flags]: [u8; 1] = unhex(flags)?;
    if trace_id.iter().all(|b| *b == 0) || parent_id.iter().all(|b| *b == 0) {
        return None;
    }
    Some((trace_id, flags))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_parent_with_a_new_span() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", PARENT.parse().unwrap());
        h.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
        let ctx = TraceContext::propagate(&mut h);
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let out = h["traceparent"].to_str().unwrap();
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{out}");
        assert!(out.ends_with("-01"));
        assert_ne!(&out[36..52], "00f067aa0ba902b7", "a new span id");
        assert_eq!(h["tracestate"], "congo=t61rcWkgMzE");
    }

    #[test]
    fn starts_a_trace_when_absent_or_invalid() {
        for bad in [
            None,
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            Some("garbage"),
        ] {
            let mut h = HeaderMap::new();
            if let Some(b) = bad {
                h.insert("traceparent", b.parse().unwrap());
                h.insert("tracestate", "a=b".parse().unwrap());
            }
            let ctx = TraceContext::propagate(&mut h);
            assert_ne!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad:?}");
            assert_eq!(h["traceparent"].to_str().unwrap(), ctx.traceparent());
            assert!(h.get("tracestate").is_none(), "{bad:?}");
        }
        // A later version with extra fields is accepted (forward compatible).
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what").is_some());
    }

    #[test]
    fn traceparent_is_written_in_lower_hex() {
        let ctx = TraceContext {
            trace_id: unhex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: unhex("00f067aa0ba902b7").unwrap(),
            flags: 0x0f,
        };
        assert_eq!(
            ctx.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0f"
        );
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
