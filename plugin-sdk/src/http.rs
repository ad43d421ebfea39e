//! Handles on the request and the response a phase works on. They carry no
//! data themselves: every method is one call to the host, so a filter pays
//! only for what it reads or changes.

use crate::sys::{self, Message};
use crate::types::HostError;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

/// The request, in the request-headers phase.
#[derive(Debug)]
pub struct Request {
    _not_send: PhantomData<*const ()>,
}

/// Headers only the host may change: framing and connection headers, and
/// `host` (use `Request::set_authority`). Setting one fails with
/// `HostError::ReservedHeader`; check configured names against it at load.
pub const RESERVED_HEADERS: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "host",
];

/// Whether `name` is a valid header name (an RFC 9110 token), so filters can
/// refuse a bad configured name at load instead of failing requests.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The IP part of a client address, in canonical form: `203.0.113.7:5000` →
/// `203.0.113.7`, `[2001:DB8::1]:443` → `2001:db8::1`, an IPv4-mapped IPv6
/// address (`[::ffff:203.0.113.7]:80`, from a dual-stack listener) →
/// `203.0.113.7`. Anything unparsable is returned as given.
pub fn client_ip_of(address: &str) -> String {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        // An IPv4 address parses only from its one canonical form (no
        // leading zeros), so the text before the port is already it: no
        // formatting needed, which in Wasm is most of this function's cost.
        if socket.is_ipv4()
            && let Some((ip, _)) = address.rsplit_once(':')
        {
            return ip.to_string();
        }
        return socket.ip().to_canonical().to_string();
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        return ip.to_canonical().to_string();
    }
    address.to_string()
}

/// The response, in the response-headers phase.
#[derive(Debug)]
pub struct Response {
    _not_send: PhantomData<*const ()>,
}

impl Request {
    pub(crate) fn new() -> Self {
        Request { _not_send: PhantomData }
    }

    /// The method, for example `GET`.
    pub fn method(&self) -> String {
        sys::method()
    }
    /// Replace the method.
    pub fn set_method(&mut self, method: &str) -> Result<(), HostError> {
        sys::set_method(method)
    }
    /// The path with its query, for example `/search?q=x`.
    pub fn path(&self) -> String {
        sys::path()
    }
    /// Replace the path (and query); must start with `/`.
    pub fn set_path(&mut self, path_with_query: &str) -> Result<(), HostError> {
        sys::set_path(path_with_query)
    }
    /// The authority (`host[:port]`) the client asked for.
    pub fn authority(&self) -> Option<String> {
        sys::authority()
    }
    /// Replace the authority forwarded upstream.
    pub fn set_authority(&mut self, authority: &str) -> Result<(), HostError> {
        sys::set_authority(authority)
    }
    /// `http` or `https`.
    pub fn scheme(&self) -> String {
        sys::scheme()
    }
    /// Replace the scheme recorded for the upstream.
    pub fn set_scheme(&mut self, scheme: &str) -> Result<(), HostError> {
        sys::set_scheme(scheme)
    }
    /// The client's address as `ip:port`.
    pub fn client_address(&self) -> String {
        sys::client_address()
    }
    /// The client's IP address without the port, canonical (see [`client_ip_of`]).
    pub fn client_ip(&self) -> String {
        client_ip_of(&sys::client_address())
    }
    /// The name of the route that matched, as written in the configuration.
    pub fn route(&self) -> String {
        sys::route()
    }
    /// The cluster the request will be sent to.
    pub fn cluster(&self) -> String {
        sys::cluster()
    }
    /// Send the request to another cluster: the route's own, or one the
    /// filter entry's `clusters` list allows; any other is refused with
    /// [`HostError::UnknownCluster`].
    pub fn set_cluster(&mut self, cluster: &str) -> Result<(), HostError> {
        sys::set_cluster(cluster)
    }
}

impl Response {
    pub(crate) fn new() -> Self {
        Response { _not_send: PhantomData }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        sys::status()
    }
    /// Replace the status code (100–599).
    pub fn set_status(&mut self, status: u16) -> Result<(), HostError> {
        sys::set_status(status)
    }
}

/// Header editing common to [`Request`] and [`Response`], for code that
/// works on either (the inherent methods of the same names need no import).
pub trait Headers {
    /// The first value of a header as text (invalid UTF-8 replaced).
    fn header(&self, name: &str) -> Option<String>;
    /// Every value of a header, in order, as raw bytes.
    fn header_all(&self, name: &str) -> Vec<Vec<u8>>;
    /// Replace every value of a header with this one.
    fn set_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Add a value, keeping the existing ones.
    fn append_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Remove every value of a header.
    fn remove_header(&mut self, name: &str) -> Result<(), HostError>;
}

/// Header access shared by [`Request`] and [`Response`].
macro_rules! header_methods {
    ($ty:ty, $msg:expr) => {
        impl $ty {
            /// The first value of a header as text (invalid UTF-8 replaced).
            pub fn header(&self, name: &str) -> Option<String> {
                sys::header($msg, name).map(|v| String::from_utf8_lossy(&v).into_owned())
            }
            /// The first value of a header as raw bytes.
            pub fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
                sys::header($msg, name)
            }
            /// Every value of a header, in order, as raw bytes.
            pub fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
                sys::header_all($msg, name)
            }
            /// Every header line, in order; names are lower case.
            pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
                sys::headers($msg)
            }
            /// Replace every value of a header with this one.
            pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), HostError> {
                sys::set_header($msg, name, value.as_ref())
            }
            /// Add a value, keeping the existing ones.
            pub fn append_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), HostError> {
                sys::append_header($msg, name, value.as_ref())
            }
            /// Remove every value of a header.
            pub fn remove_header(&mut self, name: &str) -> Result<(), HostError> {
                sys::remove_header($msg, name)
            }
        }

        impl Headers for $ty {
            fn header(&self, name: &str) -> Option<String> {
                <$ty>::header(self, name)
            }
            fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
                sys::header_all($msg, name)
            }
            fn set_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
                sys::set_header($msg, name, value)
            }
            fn append_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
                sys::append_header($msg, name, value)
            }
            fn remove_header(&mut self, name: &str) -> Result<(), HostError> {
                sys::remove_header($msg, name)
            }
        }
    };
}

header_methods!(Request, Message::Request);
header_methods!(Response, Message::Response);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ips_are_canonical() {
        assert_eq!(client_ip_of("203.0.113.7:5000"), "203.0.113.7");
        assert_eq!(client_ip_of("[2001:DB8::1]:443"), "2001:db8::1");
        assert_eq!(client_ip_of("[::ffff:203.0.113.7]:80"), "203.0.113.7");
        assert_eq!(client_ip_of("203.0.113.7"), "203.0.113.7");
        assert_eq!(client_ip_of("::1"), "::1");
        assert_eq!(client_ip_of("unix:/tmp/sock"), "unix:/tmp/sock");
        assert_eq!(client_ip_of("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(client_ip_of("[::1]:8080"), "::1");
        // IPv4 is returned as received: it parses only from its canonical
        // form, so anything else is not taken apart.
        assert_eq!(client_ip_of("0.0.0.0:1"), "0.0.0.0");
        assert_eq!(client_ip_of("010.0.0.1:80"), "010.0.0.1:80");
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(is_header_name("x-api-key"));
        assert!(!is_header_name("bad name"));
        assert!(!is_header_name(""));
        assert!(!is_header_name("x-\u{7f}"));
    }
}
