//! A tiny authoritative DNS server on loopback for the tests: it answers A
//! queries from a table the test changes while it runs, with a fixed TTL.
//! AAAA (and any other type) for a known name gets an empty NOERROR answer;
//! an unknown name gets NXDOMAIN. It listens on UDP and TCP on one port.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// Names (lower case, without the trailing dot) and their A addresses.
type Table = Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>;

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    table: Table,
    /// How many queries it has answered.
    queries: Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl DnsServer {
    /// Start on `127.0.0.1:<port>` (UDP and TCP), answering with `ttl_secs`.
    pub async fn start(ttl_secs: u32) -> DnsServer {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("dns addr");
        let table: Table = Arc::default();
        let queries = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let udp_task = {
            let (table, queries) = (table.clone(), queries.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                        continue;
                    };
                    if let Some(reply) = answer(&buf[..n], &table, ttl_secs) {
                        queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = udp.send_to(&reply, peer).await;
                    }
                }
            })
        };
        let tcp_task = {
            let (table, queries) = (table.clone(), queries.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else {
                        continue;
                    };
                    let (table, queries) = (table.clone(), queries.clone());
                    tokio::spawn(async move {
                        // Each message is prefixed by its length (RFC 1035 4.2.2).
                        loop {
                            let Ok(len) = stream.read_u16().await else { return };
                            let mut msg = vec![0u8; usize::from(len)];
                            if stream.read_exact(&mut msg).await.is_err() {
                                return;
                            }
                            let Some(reply) = answer(&msg, &table, ttl_secs) else {
                                return;
                            };
                            queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Ok(reply_len) = u16::try_from(reply.len()) else {
                                return;
                            };
                            if stream.write_u16(reply_len).await.is_err() || stream.write_all(&reply).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            })
        };
        DnsServer {
            addr,
            table,
            queries,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// The UDP (and TCP) address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer `name` with `addrs` from now on; an empty list removes the
    /// name (NXDOMAIN).
    pub fn set(&self, name: &str, addrs: Vec<Ipv4Addr>) {
        let key = normalize(name);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if addrs.is_empty() {
            table.remove(&key);
        } else {
            table.insert(key, addrs);
        }
    }

    /// Forget `name` (NXDOMAIN from now on).
    pub fn remove(&self, name: &str) {
        self.set(name, Vec::new());
    }

    /// How many queries have been answered so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// UDP and TCP sockets on the same free loopback port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns udp");
        let port = udp.local_addr().expect("dns udp addr").port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The reply to one query message, or `None` when it is not a query.
fn answer(request: &[u8], table: &Table, ttl: u32) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    if request.message_type() != MessageType::Query {
        return None;
    }
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true);
    let Some(query) = request.queries().first() else {
        reply.set_response_code(ResponseCode::FormErr);
        return reply.to_vec().ok();
    };
    reply.add_query(query.clone());
    if request.op_code() != OpCode::Query {
        reply.set_response_code(ResponseCode::NotImp);
        return reply.to_vec().ok();
    }
    let known = {
        let table = table.lock().unwrap_or_else(|e| e.into_inner());
        table.get(&normalize(&query.name().to_ascii())).cloned()
    };
    match known {
        None => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Some(addrs) => {
            reply.set_response_code(ResponseCode::NoError);
            if query.query_type() == RecordType::A {
                for ip in addrs {
                    reply.add_answer(Record::from_rdata(query.name().clone(), ttl, RData::A(A(ip))));
                }
            }
        }
    }
    reply.to_vec().ok()
}
