//! Arbitrary sequences of host calls with arbitrary arguments against the
//! real host state; see `sluice::wasm::fuzzing`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sluice::wasm::fuzzing::{HostCall, run};

/// Mirror of `HostCall` that `arbitrary` can generate.
#[derive(Debug, Arbitrary)]
enum Call {
    SetMethod(String),
    SetPath(String),
    SetAuthority(String),
    SetScheme(String),
    RequestHeader(String),
    SetRequestHeader(String, Vec<u8>),
    AppendRequestHeader(String, Vec<u8>),
    RemoveRequestHeader(String),
    SetCluster(String),
    ContextSet(String, String),
    ContextGet(String),
    ContextRemove(String),
    SharedSet(String, Vec<u8>, Option<u64>),
    SharedGet(String),
    SharedIncrement(String, i64, Option<u64>),
    SharedCompareAndSwap(String, Option<Vec<u8>>, Vec<u8>),
    StartResponse,
    SetStatus(u16),
    SetResponseHeader(String, Vec<u8>),
    AppendResponseHeader(String, Vec<u8>),
    RemoveResponseHeader(String),
}

impl From<Call> for HostCall {
    fn from(c: Call) -> HostCall {
        match c {
            Call::SetMethod(a) => HostCall::SetMethod(a),
            Call::SetPath(a) => HostCall::SetPath(a),
            Call::SetAuthority(a) => HostCall::SetAuthority(a),
            Call::SetScheme(a) => HostCall::SetScheme(a),
            Call::RequestHeader(a) => HostCall::RequestHeader(a),
            Call::SetRequestHeader(a, b) => HostCall::SetRequestHeader(a, b),
            Call::AppendRequestHeader(a, b) => HostCall::AppendRequestHeader(a, b),
            Call::RemoveRequestHeader(a) => HostCall::RemoveRequestHeader(a),
            Call::SetCluster(a) => HostCall::SetCluster(a),
            Call::ContextSet(a, b) => HostCall::ContextSet(a, b),
            Call::ContextGet(a) => HostCall::ContextGet(a),
            Call::ContextRemove(a) => HostCall::ContextRemove(a),
            Call::SharedSet(a, b, c) => HostCall::SharedSet(a, b, c),
            Call::SharedGet(a) => HostCall::SharedGet(a),
            Call::SharedIncrement(a, b, c) => HostCall::SharedIncrement(a, b, c),
            Call::SharedCompareAndSwap(a, b, c) => HostCall::SharedCompareAndSwap(a, b, c),
            Call::StartResponse => HostCall::StartResponse,
            Call::SetStatus(a) => HostCall::SetStatus(a),
            Call::SetResponseHeader(a, b) => HostCall::SetResponseHeader(a, b),
            Call::AppendResponseHeader(a, b) => HostCall::AppendResponseHeader(a, b),
            Call::RemoveResponseHeader(a) => HostCall::RemoveResponseHeader(a),
        }
    }
}

fuzz_target!(|calls: Vec<Call>| {
    let calls: Vec<HostCall> = calls.into_iter().map(HostCall::from).collect();
    run(&calls);
});
