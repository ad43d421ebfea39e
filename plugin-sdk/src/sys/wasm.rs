//! Host calls through the generated WIT bindings (wasm32 only). This is the
//! only module that names generated import types.

use super::Message;
use crate::bindings::sluice::filter::{
    clock, connection, context, interception, log, outbound_http, random, remote_document, request, response,
    shared_state, shared_store, types as wit,
};
use crate::document::{Document, DocumentOptions};
use crate::outbound::{CallError, OutboundRequest, OutboundResponse};
use crate::store::{Bucket, RateDecision, StoreError};
use crate::types::{HostError, LogLevel};

fn err(e: wit::HostError) -> HostError {
    match e {
        wit::HostError::InvalidName => HostError::InvalidName,
        wit::HostError::InvalidValue => HostError::InvalidValue,
        wit::HostError::ReservedHeader => HostError::ReservedHeader,
        wit::HostError::InvalidArgument => HostError::InvalidArgument,
        wit::HostError::LimitExceeded => HostError::LimitExceeded,
        wit::HostError::WrongPhase => HostError::WrongPhase,
        wit::HostError::UnknownCluster => HostError::UnknownCluster,
    }
}

fn level(l: LogLevel) -> wit::LogLevel {
    match l {
        LogLevel::Trace => wit::LogLevel::Trace,
        LogLevel::Debug => wit::LogLevel::Debug,
        LogLevel::Info => wit::LogLevel::Info,
        LogLevel::Warn => wit::LogLevel::Warn,
        LogLevel::Error => wit::LogLevel::Error,
    }
}

pub(crate) fn method() -> String {
    request::method()
}
pub(crate) fn set_method(m: &str) -> Result<(), HostError> {
    request::set_method(m).map_err(err)
}
pub(crate) fn path() -> String {
    request::path()
}
pub(crate) fn set_path(p: &str) -> Result<(), HostError> {
    request::set_path(p).map_err(err)
}
pub(crate) fn authority() -> Option<String> {
    request::authority()
}
pub(crate) fn set_authority(a: &str) -> Result<(), HostError> {
    request::set_authority(a).map_err(err)
}
pub(crate) fn scheme() -> String {
    request::scheme()
}
pub(crate) fn set_scheme(s: &str) -> Result<(), HostError> {
    request::set_scheme(s).map_err(err)
}
pub(crate) fn client_address() -> String {
    request::client_address()
}

pub(crate) fn route() -> String {
    request::route()
}
pub(crate) fn cluster() -> String {
    request::cluster()
}
pub(crate) fn set_cluster(c: &str) -> Result<(), HostError> {
    request::set_cluster(c).map_err(err)
}
pub(crate) fn status() -> u16 {
    response::status()
}
pub(crate) fn set_status(s: u16) -> Result<(), HostError> {
    response::set_status(s).map_err(err)
}

pub(crate) fn header(m: Message, name: &str) -> Option<Vec<u8>> {
    match m {
        Message::Request => request::header(name),
        Message::Response => response::header(name),
    }
}
pub(crate) fn header_all(m: Message, name: &str) -> Vec<Vec<u8>> {
    match m {
        Message::Request => request::header_all(name),
        Message::Response => response::header_all(name),
    }
}
pub(crate) fn headers(m: Message) -> Vec<(String, Vec<u8>)> {
    let lines = match m {
        Message::Request => request::headers(),
        Message::Response => response::headers(),
    };
    lines.into_iter().map(|h| (h.name, h.value)).collect()
}
pub(crate) fn set_header(m: Message, name: &str, value: &[u8]) -> Result<(), HostError> {
    match m {
        Message::Request => request::set_header(name, value),
        Message::Response => response::set_header(name, value),
    }
    .map_err(err)
}
pub(crate) fn append_header(m: Message, name: &str, value: &[u8]) -> Result<(), HostError> {
    match m {
        Message::Request => request::append_header(name, value),
        Message::Response => response::append_header(name, value),
    }
    .map_err(err)
}
pub(crate) fn remove_header(m: Message, name: &str) -> Result<(), HostError> {
    match m {
        Message::Request => request::remove_header(name),
        Message::Response => response::remove_header(name),
    }
    .map_err(err)
}

pub(crate) fn context_get(key: &str) -> Option<String> {
    context::get(key)
}
pub(crate) fn context_set(key: &str, value: &str) -> Result<(), HostError> {
    context::set(key, value).map_err(err)
}
pub(crate) fn context_remove(key: &str) {
    context::remove(key)
}
pub(crate) fn context_keys() -> Vec<String> {
    context::keys()
}

pub(crate) fn shared_get(key: &str) -> Option<Vec<u8>> {
    shared_state::get(key)
}
pub(crate) fn shared_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), HostError> {
    shared_state::set(key, value, ttl_ms).map_err(err)
}
pub(crate) fn shared_delete(key: &str) -> bool {
    shared_state::delete(key)
}
pub(crate) fn shared_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, HostError> {
    shared_state::increment(key, delta, ttl_ms).map_err(err)
}
pub(crate) fn shared_compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: &[u8],
    ttl_ms: Option<u64>,
) -> Result<bool, HostError> {
    shared_state::compare_and_swap(key, expected, new, ttl_ms).map_err(err)
}

fn store_err(e: shared_store::StoreError) -> StoreError {
    match e {
        shared_store::StoreError::Unavailable(why) => StoreError::Unavailable(why),
        shared_store::StoreError::LimitExceeded => StoreError::LimitExceeded,
        shared_store::StoreError::InvalidArgument => StoreError::InvalidArgument,
    }
}
pub(crate) fn store_get(key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    shared_store::get(key).map_err(store_err)
}
pub(crate) fn store_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StoreError> {
    shared_store::set(key, value, ttl_ms).map_err(store_err)
}
pub(crate) fn store_delete(key: &str) -> Result<bool, StoreError> {
    shared_store::delete(key).map_err(store_err)
}
pub(crate) fn store_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, StoreError> {
    shared_store::increment(key, delta, ttl_ms).map_err(store_err)
}
pub(crate) fn store_compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: &[u8],
    ttl_ms: Option<u64>,
) -> Result<bool, StoreError> {
    shared_store::compare_and_swap(key, expected, new, ttl_ms).map_err(store_err)
}
fn wit_buckets(buckets: &[Bucket]) -> Vec<shared_store::Bucket> {
    buckets
        .iter()
        .map(|b| shared_store::Bucket {
            key: b.key.clone(),
            interval_ns: b.interval_ns,
            tolerance_ns: b.tolerance_ns,
        })
        .collect()
}
fn decision(d: shared_store::RateDecision) -> RateDecision {
    RateDecision {
        allowed: d.allowed,
        tats: d.tats,
        now_ns: d.now_ns,
    }
}
pub(crate) fn store_acquire(buckets: &[Bucket], cost: u32) -> Result<RateDecision, StoreError> {
    shared_store::acquire(&wit_buckets(buckets), cost)
        .map(decision)
        .map_err(store_err)
}
pub(crate) fn store_acquire_local(buckets: &[Bucket], cost: u32) -> Result<RateDecision, StoreError> {
    shared_store::acquire_local(&wit_buckets(buckets), cost)
        .map(decision)
        .map_err(store_err)
}

pub(crate) fn log(l: LogLevel, message: &str) {
    log::log(level(l), message)
}
pub(crate) fn log_enabled(l: LogLevel) -> bool {
    log::enabled(level(l))
}

pub(crate) fn now_unix_nanos() -> u64 {
    clock::now_unix_nanos()
}
pub(crate) fn monotonic_nanos() -> u64 {
    clock::monotonic_nanos()
}

pub(crate) fn random_u64() -> u64 {
    random::next_u64()
}
pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
    random::bytes(len)
}

pub(crate) fn connection_listener() -> String {
    connection::listener()
}
pub(crate) fn connection_local_address() -> String {
    connection::local_address()
}
pub(crate) fn connection_tls() -> Option<crate::connection::TlsInfo> {
    connection::tls().map(|t| {
        let peer = t.peer.map(|p| crate::connection::PeerIdentity {
            spiffe_id: p.spiffe_id,
            trust_domain: p.trust_domain,
            uris: p.uris,
            dns_names: p.dns_names,
            subject: p.subject,
        });
        crate::connection::TlsInfo {
            version: t.version,
            cipher_suite: t.cipher_suite,
            server_name: t.server_name,
            alpn: t.alpn,
            peer,
        }
    })
}

pub(crate) fn interception_direction() -> Option<crate::interception::Direction> {
    interception::direction().map(|d| match d {
        interception::TrafficDirection::Inbound => crate::interception::Direction::Inbound,
        interception::TrafficDirection::Outbound => crate::interception::Direction::Outbound,
    })
}
pub(crate) fn interception_original_destination() -> Option<String> {
    interception::original_destination()
}

pub(crate) fn outbound_send(r: OutboundRequest) -> Result<OutboundResponse, CallError> {
    let timeout_ms = r.timeout_ms();
    let request = outbound_http::OutboundRequest {
        cluster: r.cluster,
        method: r.method,
        path: r.path,
        authority: r.authority,
        headers: r
            .headers
            .into_iter()
            .map(|(name, value)| wit::HeaderLine { name, value })
            .collect(),
        body: r.body,
        timeout_ms,
    };
    match outbound_http::send(&request) {
        Ok(resp) => Ok(OutboundResponse {
            status: resp.status,
            headers: resp.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: resp.body,
        }),
        Err(e) => Err(match e {
            outbound_http::CallError::NotAllowed => CallError::NotAllowed,
            outbound_http::CallError::WrongPhase => CallError::WrongPhase,
            outbound_http::CallError::InvalidRequest(why) => CallError::InvalidRequest(why),
            outbound_http::CallError::Timeout => CallError::Timeout,
            outbound_http::CallError::ResponseTooLarge => CallError::ResponseTooLarge,
            outbound_http::CallError::Failed(why) => CallError::Failed(why),
        }),
    }
}

pub(crate) fn document_subscribe(cluster: &str, uri: &str, options: DocumentOptions) -> Result<u32, String> {
    let options = remote_document::DocumentOptions {
        min_refresh_ms: DocumentOptions::ms(options.min_refresh),
        max_refresh_ms: DocumentOptions::ms(options.max_refresh),
        max_bytes: options.max_bytes,
    };
    remote_document::subscribe(cluster, uri, options)
}
pub(crate) fn document_get(handle: u32, known: Option<u64>) -> Result<Option<Document>, String> {
    remote_document::get(handle, known).map(|d| {
        d.map(|d| Document {
            version: d.version,
            body: d.body,
        })
    })
}
pub(crate) fn document_refresh(handle: u32) -> bool {
    remote_document::refresh(handle)
}
