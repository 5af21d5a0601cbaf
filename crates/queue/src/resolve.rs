//! Finding where a domain's mail goes: MX records in preference order (RFC 5321 §5.1),
//! the implicit MX (the domain's own A/AAAA) when there is none, and null MX (RFC 7505).
//!
//! [`Resolve`] is a trait so tests can answer from a table ([`StaticResolver`]); the
//! server uses [`HickoryResolver`].

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Mutex;

/// A boxed future, so [`Resolve`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// Lower is preferred.
    pub preference: u16,
    /// The mail exchanger's host name, without the final dot; `""` is the root (null
    /// MX, RFC 7505).
    pub exchange: String,
}

/// The answer to an MX query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// MX records, in any order.
    Records(Vec<Mx>),
    /// The name exists but has no MX records: it is its own mail exchanger
    /// (RFC 5321 §5.1, the implicit MX).
    NoRecords,
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name does not exist (NXDOMAIN): a permanent failure.
    #[error("{0}: no such domain")]
    NotFound(String),
    /// The DNS could not answer now (timeout, SERVFAIL): try again later.
    #[error("DNS lookup for {0} failed: {1}")]
    Temporary(String, String),
}

/// DNS lookups the queue needs.
pub trait Resolve: Send + Sync + 'static {
    /// The MX records of `domain` (ASCII, no final dot).
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<MxAnswer, ResolveError>>;
    /// The IPv4 and IPv6 addresses of `host`; empty when it has none.
    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, ResolveError>>;
}

/// A destination's mail exchangers, most preferred first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchangers {
    /// Host names to try in this order.
    Hosts(Vec<String>),
    /// The domain accepts no mail (null MX, RFC 7505 §3).
    NullMx,
}

/// Orders MX records for delivery (RFC 5321 §5.1): by preference, randomised among
/// equal preferences so load spreads; no records means the domain itself. A lone
/// `MX 0 .` is a null MX (RFC 7505 §3); root exchanges among other records are
/// ignored.
pub fn order_mx(domain: &str, answer: MxAnswer) -> Exchangers {
    let mut records = match answer {
        MxAnswer::NoRecords => return Exchangers::Hosts(vec![domain.to_string()]),
        MxAnswer::Records(r) => r,
    };
    if records.is_empty() {
        return Exchangers::Hosts(vec![domain.to_string()]);
    }
    if records.iter().all(|m| m.exchange.is_empty()) {
        return Exchangers::NullMx;
    }
    records.retain(|m| !m.exchange.is_empty());
    // Random keys, then a stable sort by preference: equal preferences end up shuffled.
    let mut keyed: Vec<(u16, u64, String)> = records
        .into_iter()
        .map(|m| (m.preference, rand::random::<u64>(), m.exchange))
        .collect();
    keyed.sort_by_key(|k| (k.0, k.1));
    let mut hosts: Vec<String> = Vec::with_capacity(keyed.len());
    for (_, _, h) in keyed {
        if !hosts.iter().any(|x| x.eq_ignore_ascii_case(&h)) {
            hosts.push(h);
        }
    }
    Exchangers::Hosts(hosts)
}

/// The resolver the server uses: hickory with the system configuration, or the
/// configured servers (`[dns] servers`). If the system configuration cannot be read,
/// lookups fail as temporary errors (mail is deferred, not bounced) and building is
/// tried again on the next lookup.
pub struct HickoryResolver {
    servers: Vec<SocketAddr>,
    inner: Mutex<Option<TokioResolver>>,
}

impl HickoryResolver {
    /// A resolver using `servers`; empty means `/etc/resolv.conf`. Errors when the
    /// configuration cannot be read now (the caller may still use
    /// [`HickoryResolver::lazy`]).
    pub fn new(servers: &[SocketAddr]) -> Result<HickoryResolver, ResolveError> {
        let r = HickoryResolver::lazy(servers);
        let built = build(servers)?;
        *r.inner.lock().unwrap_or_else(|p| p.into_inner()) = Some(built);
        Ok(r)
    }

    /// A resolver that reads its configuration at the first lookup.
    pub fn lazy(servers: &[SocketAddr]) -> HickoryResolver {
        HickoryResolver {
            servers: servers.to_vec(),
            inner: Mutex::new(None),
        }
    }

    fn resolver(&self) -> Result<TokioResolver, ResolveError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = inner.as_ref() {
            return Ok(r.clone());
        }
        let r = build(&self.servers)?;
        *inner = Some(r.clone());
        Ok(r)
    }
}

fn build(servers: &[SocketAddr]) -> Result<TokioResolver, ResolveError> {
    let fail = |e: NetError| ResolveError::Temporary("resolver setup".into(), e.to_string());
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(fail)?
    } else {
        let mut config = ResolverConfig::from_name_servers(Vec::new());
        for s in servers {
            let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
            udp.port = s.port();
            let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
            tcp.port = s.port();
            config.add_name_server(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
        }
        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
    };
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build().map_err(fail)
}

/// Fully qualified, so no search domain is appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn classify(name: &str, e: NetError) -> Result<(), ResolveError> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => {
            if nr.response_code == ResponseCode::NXDomain {
                Err(ResolveError::NotFound(name.to_string()))
            } else {
                Ok(())
            }
        }
        other => Err(ResolveError::Temporary(name.to_string(), other.to_string())),
    }
}

impl Resolve for HickoryResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<MxAnswer, ResolveError>> {
        Box::pin(async move {
            let resolver = self.resolver()?;
            match resolver.mx_lookup(fqdn(domain)).await {
                Ok(lookup) => {
                    let records: Vec<Mx> = lookup
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::MX(mx) => Some(Mx {
                                preference: mx.preference,
                                exchange: mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                            }),
                            _ => None,
                        })
                        .collect();
                    Ok(if records.is_empty() {
                        MxAnswer::NoRecords
                    } else {
                        MxAnswer::Records(records)
                    })
                }
                Err(e) => classify(domain, e).map(|()| MxAnswer::NoRecords),
            }
        })
    }

    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, ResolveError>> {
        Box::pin(async move {
            let resolver = self.resolver()?;
            match resolver.lookup_ip(fqdn(host)).await {
                Ok(lookup) => Ok(lookup.iter().collect()),
                Err(e) => classify(host, e).map(|()| Vec::new()),
            }
        })
    }
}

/// Answers from tables: for tests, and for setups without DNS. Names are matched
/// without regard to case; unknown domains have no MX, unknown hosts do not exist.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    mx: HashMap<String, Vec<Mx>>,
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Adds an MX record (`exchange` `"."` or `""` for a null MX).
    pub fn with_mx(mut self, domain: &str, preference: u16, exchange: &str) -> StaticResolver {
        self.mx
            .entry(domain.to_ascii_lowercase())
            .or_default()
            .push(Mx {
                preference,
                exchange: exchange.trim_end_matches('.').to_ascii_lowercase(),
            });
        self
    }

    /// Adds an address for a host.
    pub fn with_host(mut self, host: &str, ip: IpAddr) -> StaticResolver {
        self.hosts
            .entry(host.to_ascii_lowercase())
            .or_default()
            .push(ip);
        self
    }
}

impl Resolve for StaticResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<MxAnswer, ResolveError>> {
        let key = domain.trim_end_matches('.').to_ascii_lowercase();
        let answer = match self.mx.get(&key) {
            Some(r) => Ok(MxAnswer::Records(r.clone())),
            None if self.hosts.contains_key(&key) => Ok(MxAnswer::NoRecords),
            None => Err(ResolveError::NotFound(key)),
        };
        Box::pin(async move { answer })
    }

    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, ResolveError>> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let answer = match self.hosts.get(&key) {
            Some(ips) => Ok(ips.clone()),
            None => Err(ResolveError::NotFound(key)),
        };
        Box::pin(async move { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(p: u16, h: &str) -> Mx {
        Mx {
            preference: p,
            exchange: h.into(),
        }
    }

    #[test]
    fn mx_in_preference_order() {
        let got = order_mx(
            "example.org",
            MxAnswer::Records(vec![mx(20, "b.example.org"), mx(10, "a.example.org")]),
        );
        assert_eq!(
            got,
            Exchangers::Hosts(vec!["a.example.org".into(), "b.example.org".into()])
        );
    }

    #[test]
    fn equal_preferences_are_shuffled_but_kept() {
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let got = order_mx(
                "example.org",
                MxAnswer::Records(vec![mx(10, "x"), mx(10, "y"), mx(5, "w"), mx(30, "z")]),
            );
            let Exchangers::Hosts(h) = got else {
                panic!("hosts expected")
            };
            assert_eq!(h.len(), 4);
            assert_eq!(h[0], "w");
            assert_eq!(h[3], "z");
            firsts.insert(h[1].clone());
        }
        assert_eq!(
            firsts.len(),
            2,
            "both equal-preference hosts come first sometimes"
        );
    }

    #[test]
    fn implicit_and_null_mx() {
        assert_eq!(
            order_mx("example.org", MxAnswer::NoRecords),
            Exchangers::Hosts(vec!["example.org".into()])
        );
        assert_eq!(
            order_mx("example.org", MxAnswer::Records(vec![mx(0, "")])),
            Exchangers::NullMx
        );
        assert_eq!(
            order_mx(
                "example.org",
                MxAnswer::Records(vec![mx(0, ""), mx(10, "mx")])
            ),
            Exchangers::Hosts(vec!["mx".into()])
        );
        assert_eq!(
            order_mx(
                "example.org",
                MxAnswer::Records(vec![mx(10, "mx"), mx(20, "MX")])
            ),
            Exchangers::Hosts(vec!["mx".into()]),
            "duplicates are tried once"
        );
    }

    #[tokio::test]
    async fn static_resolver() {
        let r = StaticResolver::new()
            .with_mx("example.org", 10, "mx.example.org")
            .with_mx("null.example", 0, ".")
            .with_host("mx.example.org", IpAddr::from([127, 0, 0, 2]))
            .with_host("bare.example", IpAddr::from([127, 0, 0, 3]));
        assert_eq!(
            r.mx("Example.ORG").await,
            Ok(MxAnswer::Records(vec![mx(10, "mx.example.org")]))
        );
        assert_eq!(
            r.mx("null.example").await,
            Ok(MxAnswer::Records(vec![mx(0, "")]))
        );
        assert_eq!(r.mx("bare.example").await, Ok(MxAnswer::NoRecords));
        assert!(matches!(
            r.mx("nowhere.example").await,
            Err(ResolveError::NotFound(_))
        ));
        assert_eq!(
            r.ips("mx.example.org.").await,
            Ok(vec![IpAddr::from([127, 0, 0, 2])])
        );
    }
}
