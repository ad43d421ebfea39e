//! Plain Rust types a filter speaks: what a phase returns, why the host
//! refused a call, log levels and the phases a filter asks for (header
//! phases and, separately, body phases).

/// What a phase tells the host to do next.
///
/// Non-exhaustive: later versions of the contract may add actions, so a
/// `match` on an `Action` needs a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Go on with the next filter, the upstream or the client.
    Continue,
    /// Stop the chain and answer the client with this response.
    Respond(LocalResponse),
}

impl Action {
    /// Shorthand for a local response with a `text/plain` body.
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Action::Respond(LocalResponse::plain_text(status, body))
    }
}

/// A response produced by a filter instead of the upstream's.
///
/// Non-exhaustive so fields can be added: build one with
/// [`LocalResponse::new`] and the builder methods; the fields stay readable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalResponse {
    /// HTTP status code, 200–599.
    pub status: u16,
    /// Header lines, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl LocalResponse {
    /// A response with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response with a `text/plain` body: what [`Action::respond`] and
    /// [`BodyAction::respond`] build.
    fn plain_text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        LocalResponse::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
    }

    /// Add a header line.
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// Why the host refused a call. The refused change was not applied.
///
/// Non-exhaustive: calls added later may fail for new reasons, so a `match`
/// on a `HostError` needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostError {
    /// The header name is not a valid HTTP token.
    InvalidName,
    /// The header value contains forbidden bytes (NUL, CR, LF).
    InvalidValue,
    /// The header is managed by the host (framing and connection headers,
    /// and `host`: use `Request::set_authority`).
    ReservedHeader,
    /// The method, path, authority, scheme or status is not valid.
    InvalidArgument,
    /// A size or count limit would be exceeded.
    LimitExceeded,
    /// Not available in the current phase.
    WrongPhase,
    /// `Request::set_cluster` named a cluster the configuration does not have.
    UnknownCluster,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostError::InvalidName => "invalid header name",
            HostError::InvalidValue => "invalid header value",
            HostError::ReservedHeader => "header is managed by the host",
            HostError::InvalidArgument => "invalid argument",
            HostError::LimitExceeded => "limit exceeded",
            HostError::WrongPhase => "not available in this phase",
            HostError::UnknownCluster => "unknown cluster",
        })
    }
}

impl std::error::Error for HostError {}

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The phases a filter wants to be called for; the host skips the others.
///
/// A set of phases, combined with `|`. Its representation is private so that
/// phases added in later versions of the contract (for example body phases)
/// are new constants, not new fields that would break every filter building
/// one by hand. New phases are opt-in: they never join [`Phases::ALL`], the
/// default of [`Filter::phases`](crate::Filter::phases), so a filter is only
/// called for a phase it asked for by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Phases {
    bits: u8,
}

impl Phases {
    const REQUEST_HEADERS: u8 = 1;
    const RESPONSE_HEADERS: u8 = 1 << 1;

    /// No phase: the filter is never called after `create`.
    pub const NONE: Phases = Phases { bits: 0 };
    /// Only the request-headers phase (`on_request_headers`).
    pub const REQUEST: Phases = Phases {
        bits: Self::REQUEST_HEADERS,
    };
    /// Only the response-headers phase (`on_response_headers`).
    pub const RESPONSE: Phases = Phases {
        bits: Self::RESPONSE_HEADERS,
    };
    /// Both header phases, `REQUEST | RESPONSE`. It stays exactly that:
    /// phases added later are opt-in and not part of it.
    pub const ALL: Phases = Phases {
        bits: Self::REQUEST_HEADERS | Self::RESPONSE_HEADERS,
    };

    /// Every phase of `self` and of `other`; the same as `self | other`,
    /// usable in `const` items.
    pub const fn union(self, other: Phases) -> Phases {
        Phases {
            bits: self.bits | other.bits,
        }
    }

    /// `self`, plus `other` if `on` is true: builds a set from conditions,
    /// as in `Phases::NONE.with(Phases::REQUEST, !rules.is_empty())`.
    #[must_use]
    pub const fn with(self, other: Phases, on: bool) -> Phases {
        if on { self.union(other) } else { self }
    }

    /// Whether every phase of `other` is in `self`.
    pub const fn contains(self, other: Phases) -> bool {
        self.bits & other.bits == other.bits
    }

    /// Whether no phase is set.
    pub const fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// Whether `on_request_headers` is called.
    pub const fn request_headers(self) -> bool {
        self.contains(Phases::REQUEST)
    }

    /// Whether `on_response_headers` is called.
    pub const fn response_headers(self) -> bool {
        self.contains(Phases::RESPONSE)
    }
}

impl std::ops::BitOr for Phases {
    type Output = Phases;
    fn bitor(self, other: Phases) -> Phases {
        self.union(other)
    }
}

impl std::ops::BitOrAssign for Phases {
    fn bitor_assign(&mut self, other: Phases) {
        *self = self.union(other);
    }
}

impl std::fmt::Debug for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = Vec::new();
        if self.request_headers() {
            names.push("REQUEST");
        }
        if self.response_headers() {
            names.push("RESPONSE");
        }
        if names.is_empty() {
            f.write_str("Phases(NONE)")
        } else {
            write!(f, "Phases({})", names.join(" | "))
        }
    }
}

/// What a body phase tells the host to do next.
///
/// Non-exhaustive, as [`Action`]: a `match` on a `BodyAction` needs a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyAction {
    /// Keep the body as it is and go on.
    Continue,
    /// Replace the body with this one. The host fixes the framing
    /// (`content-length`).
    Replace(Vec<u8>),
    /// Stop and answer with this response instead, as [`Action::Respond`].
    Respond(LocalResponse),
}

impl BodyAction {
    /// Shorthand for a local response with a `text/plain` body, as
    /// [`Action::respond`].
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Self {
        BodyAction::Respond(LocalResponse::plain_text(status, body))
    }
}

/// The body phases a filter wants to be called for (WIT `body-phases`,
/// added in 0.1.3); the host buffers a body only for a filter that asked
/// for its phase.
///
/// Shaped like [`Phases`]: a set combined with `|`, with a private
/// representation. The default of
/// [`Filter::body_phases`](crate::Filter::body_phases) is
/// [`BodyPhases::NONE`]: a filter is only called for a body phase it asked
/// for by name, and chains where no filter asks stream bodies untouched.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BodyPhases {
    bits: u8,
}

impl BodyPhases {
    const REQUEST_BIT: u8 = 1;
    const RESPONSE_BIT: u8 = 1 << 1;

    /// No body phase: bodies stream past the filter (the default).
    pub const NONE: BodyPhases = BodyPhases { bits: 0 };
    /// Only the request-body phase (`on_request_body`).
    pub const REQUEST_BODY: BodyPhases = BodyPhases {
        bits: Self::REQUEST_BIT,
    };
    /// Only the response-body phase (`on_response_body`).
    pub const RESPONSE_BODY: BodyPhases = BodyPhases {
        bits: Self::RESPONSE_BIT,
    };
    /// Both body phases, `REQUEST_BODY | RESPONSE_BODY`.
    pub const ALL: BodyPhases = BodyPhases {
        bits: Self::REQUEST_BIT | Self::RESPONSE_BIT,
    };

    /// Every phase of `self` and of `other`; the same as `self | other`,
    /// usable in `const` items.
    pub const fn union(self, other: BodyPhases) -> BodyPhases {
        BodyPhases {
            bits: self.bits | other.bits,
        }
    }

    /// `self`, plus `other` if `on` is true.
    #[must_use]
    pub const fn with(self, other: BodyPhases, on: bool) -> BodyPhases {
        if on { self.union(other) } else { self }
    }

    /// Whether every phase of `other` is in `self`.
    pub const fn contains(self, other: BodyPhases) -> bool {
        self.bits & other.bits == other.bits
    }

    /// Whether no phase is set.
    pub const fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// Whether `on_request_body` is called.
    pub const fn request_body(self) -> bool {
        self.contains(BodyPhases::REQUEST_BODY)
    }

    /// Whether `on_response_body` is called.
    pub const fn response_body(self) -> bool {
        self.contains(BodyPhases::RESPONSE_BODY)
    }
}

impl std::ops::BitOr for BodyPhases {
    type Output = BodyPhases;
    fn bitor(self, other: BodyPhases) -> BodyPhases {
        self.union(other)
    }
}

impl std::ops::BitOrAssign for BodyPhases {
    fn bitor_assign(&mut self, other: BodyPhases) {
        *self = self.union(other);
    }
}

impl std::fmt::Debug for BodyPhases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = Vec::new();
        if self.request_body() {
            names.push("REQUEST_BODY");
        }
        if self.response_body() {
            names.push("RESPONSE_BODY");
        }
        if names.is_empty() {
            f.write_str("BodyPhases(NONE)")
        } else {
            write!(f, "BodyPhases({})", names.join(" | "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BodyAction, BodyPhases, LocalResponse, Phases};

    #[test]
    fn phases_combine() {
        assert_eq!(Phases::REQUEST | Phases::RESPONSE, Phases::ALL);
        assert_eq!(
            Phases::NONE.with(Phases::REQUEST, true).with(Phases::RESPONSE, false),
            Phases::REQUEST
        );
        let mut p = Phases::NONE;
        assert!(p.is_empty());
        p |= Phases::RESPONSE;
        assert!(p.response_headers() && !p.request_headers());
        assert!(Phases::ALL.contains(Phases::REQUEST) && !Phases::REQUEST.contains(Phases::ALL));
        assert_eq!(format!("{:?}", Phases::ALL), "Phases(REQUEST | RESPONSE)");
        assert_eq!(format!("{:?}", Phases::NONE), "Phases(NONE)");
    }

    #[test]
    fn body_phases_combine() {
        assert_eq!(BodyPhases::REQUEST_BODY | BodyPhases::RESPONSE_BODY, BodyPhases::ALL);
        assert_eq!(
            BodyPhases::NONE
                .with(BodyPhases::REQUEST_BODY, false)
                .with(BodyPhases::RESPONSE_BODY, true),
            BodyPhases::RESPONSE_BODY
        );
        let mut p = BodyPhases::NONE;
        assert!(p.is_empty() && !p.request_body() && !p.response_body());
        p |= BodyPhases::REQUEST_BODY;
        assert!(p.request_body() && !p.response_body());
        assert!(BodyPhases::ALL.contains(BodyPhases::RESPONSE_BODY));
        assert!(!BodyPhases::RESPONSE_BODY.contains(BodyPhases::ALL));
        assert_eq!(
            format!("{:?}", BodyPhases::ALL),
            "BodyPhases(REQUEST_BODY | RESPONSE_BODY)"
        );
        assert_eq!(format!("{:?}", BodyPhases::NONE), "BodyPhases(NONE)");
    }

    #[test]
    fn body_action_respond_is_plain_text() {
        let expected = LocalResponse::new(413)
            .header("content-type", "text/plain; charset=utf-8")
            .body("too big\n");
        assert_eq!(BodyAction::respond(413, "too big\n"), BodyAction::Respond(expected));
    }
}
