//! The host side of the WIT `interception` interface (0.1.2): the direction
//! and original destination of the intercepted (sidecar) connection of the
//! message in the store, in every phase. On a gateway listener, and in
//! `init` where there is no message, both are `none`.

use super::bindings::sluice::filter::interception::{self, TrafficDirection};
use super::host::HostState;
use crate::config::Direction;
use crate::connection::Interception;

impl HostState {
    /// The interception of the call in progress's connection, if any.
    fn interception(&self) -> Option<&Interception> {
        self.call.phase?;
        self.call.connection.interception.as_ref()
    }
}

impl interception::Host for HostState {
    fn direction(&mut self) -> Option<TrafficDirection> {
        self.interception().map(|i| match i.direction {
            Direction::Inbound => TrafficDirection::Inbound,
            Direction::Outbound => TrafficDirection::Outbound,
        })
    }

    fn original_destination(&mut self) -> Option<String> {
        self.interception().map(|i| i.original_destination.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnectionFacts;
    use crate::shared_state::SharedState;
    use crate::wasm::host::{Context, ResponseExchange};
    use crate::wasm::log_budget::LogBudget;
    use interception::Host as _;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn host() -> HostState {
        HostState::new(
            "t".into(),
            Arc::new(SharedState::new(Default::default())),
            Arc::default(),
            1 << 20,
            LogBudget::detached(),
        )
    }

    fn exchange(connection: ConnectionFacts) -> ResponseExchange {
        ResponseExchange {
            head: http::Response::new(()).into_parts().0,
            context: Context::new(),
            connection: Arc::new(connection),
        }
    }

    fn cleartext() -> ConnectionFacts {
        let client: SocketAddr = "10.0.0.9:40000".parse().unwrap();
        let local: SocketAddr = "10.0.0.2:15006".parse().unwrap();
        ConnectionFacts::cleartext(Arc::from("inbound"), client, local)
    }

    /// The facts of an intercepted connection, in IPv6 as `[ip]:port`;
    /// `none` outside a call.
    #[test]
    fn intercepted_connection() {
        let mut state = host();
        let mut facts = cleartext();
        facts.interception = Some(Interception {
            direction: Direction::Outbound,
            original_destination: "[2001:db8::7]:8443".parse().unwrap(),
        });
        let mut message = exchange(facts);
        assert_eq!(state.direction(), None, "no call in progress (init)");
        assert_eq!(state.original_destination(), None);
        state.enter(&mut message, crate::wasm::Phase::ResponseHeaders);
        assert_eq!(state.direction(), Some(TrafficDirection::Outbound));
        assert_eq!(state.original_destination().as_deref(), Some("[2001:db8::7]:8443"));
        state.leave(&mut message);
        assert_eq!(state.direction(), None, "the call is over");
    }

    /// A gateway listener's connection was not intercepted: `none`.
    #[test]
    fn gateway_connection() {
        let mut state = host();
        let mut message = exchange(cleartext());
        state.enter(&mut message, crate::wasm::Phase::ResponseHeaders);
        assert_eq!(state.direction(), None);
        assert_eq!(state.original_destination(), None);
        state.leave(&mut message);
    }
}
