//! Plain Rust types a filter speaks: what a phase returns, why the host
//! refused a call, log levels and the phases a filter asks for.

/// What a phase tells the host to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter, the upstream or the client.
    Continue,
    /// Stop the chain and answer the client with this response.
    Respond(LocalResponse),
}

impl Action {
    /// Shorthand for a local response with a `text/plain` body.
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Action::Respond(
            LocalResponse::new(status)
                .header("content-type", "text/plain; charset=utf-8")
                .body(body),
        )
    }
}

/// A response produced by a filter instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Call `on_request_headers`.
    pub request_headers: bool,
    /// Call `on_response_headers`.
    pub response_headers: bool,
}

impl Phases {
    /// Both phases.
    pub const ALL: Phases = Phases {
        request_headers: true,
        response_headers: true,
    };
    /// Only the request phase.
    pub const REQUEST: Phases = Phases {
        request_headers: true,
        response_headers: false,
    };
    /// Only the response phase.
    pub const RESPONSE: Phases = Phases {
        request_headers: false,
        response_headers: true,
    };
}
