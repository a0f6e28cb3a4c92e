//! Outbound HTTP for everything a user can influence (provider base URLs,
//! later tools, MCP servers and webhooks). One policy, checked on every hop:
//!
//! - only `http`/`https`, no credentials in the URL;
//! - the host is resolved here, and if *any* address it resolves to is
//!   loopback, private, link-local, metadata, multicast or otherwise not
//!   public (in every IPv4 and IPv6 spelling: the URL parser normalises
//!   decimal, octal and hex IPv4; IPv4-mapped, -compatible, -translated
//!   (SIIT), NAT64 and 6to4 IPv6 are unwrapped; the local-use NAT64 prefix
//!   64:ff9b:1::/48 is refused outright), the request is refused;
//! - the connection is pinned to the checked address, so DNS cannot change
//!   its answer between the check and the connect;
//! - redirects are followed by hand, each one checked again, and credential
//!   headers are dropped when a redirect leaves the origin;
//! - connect and total timeouts, and a cap on the response size.
//!
//! The operator's allowlist (`ENCLAVE_EGRESS_ALLOW`, `host:port` entries such
//! as `127.0.0.1:11434` for a local Ollama) is the only way to a private address.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use reqwest::{
    Method, StatusCode,
    header::{AUTHORIZATION, HeaderMap, HeaderName, LOCATION},
};
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("That address is not a valid URL.")]
    InvalidUrl,
    #[error("Only http:// and https:// addresses can be used.")]
    Scheme,
    #[error("Addresses with a user name or password in them are not allowed.")]
    Credentials,
    #[error(
        "{host} is a private, local or reserved network address, which Enclave does not \
         connect to. An operator can allow it with ENCLAVE_EGRESS_ALLOW."
    )]
    Blocked { host: String },
    #[error("Could not find the server {host}.")]
    Dns { host: String },
    /// No connection was made: nothing was sent.
    #[error("Could not connect to {host}.")]
    Connect { host: String },
    /// The connection failed after the request may have gone out.
    #[error("The connection to {host} broke.")]
    Broken { host: String },
    #[error("{host} did not answer in time.")]
    Timeout { host: String },
    #[error("Too many redirects.")]
    TooManyRedirects,
    #[error("The answer was larger than {limit} bytes.")]
    TooLarge { limit: usize },
}

/// Name resolution, swappable so tests can say what a name resolves to.
pub trait Resolve: Send + Sync {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// The system resolver.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// An operator's exception: a host (name or IP) and port that may be private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub host: String,
    pub port: u16,
}

impl AllowEntry {
    /// Parses `host:port` (IPv6 in brackets: `[::1]:8000`).
    pub fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim();
        let (host, port) = entry.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then_some(())?;
        Some(AllowEntry {
            host: host.to_ascii_lowercase(),
            port: port.parse().ok()?,
        })
    }

    fn matches(&self, host: &str, addr: &SocketAddr) -> bool {
        self.port == addr.port()
            && (self.host == host
                || self
                    .host
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| canonical(ip) == canonical(addr.ip())))
    }
}

/// Which pinned client a request uses: the host name it is pinned for (none
/// for an IP address, which needs no pin), the checked address, the connect
/// timeout and the total timeout (none for streams).
type ClientKey = (Option<String>, SocketAddr, Duration, Option<Duration>);

/// Clients kept for reuse, so requests share connections (and HTTP/2
/// multiplexing) instead of paying for a new client, TCP and TLS each time.
const MAX_CACHED_CLIENTS: usize = 256;

#[derive(Clone)]
pub struct Egress {
    allow: Arc<Vec<AllowEntry>>,
    resolver: Arc<dyn Resolve>,
    clients: Arc<std::sync::Mutex<std::collections::HashMap<ClientKey, reqwest::Client>>>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

/// A complete (size-capped) response.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

const MAX_REDIRECTS: usize = 5;
/// Headers that carry credentials; dropped when a redirect changes origin.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-api-key", "x-goog-api-key", "cookie"];

impl Egress {
    pub fn new(allow: Vec<AllowEntry>) -> Self {
        Self::with_resolver(allow, Arc::new(SystemResolver))
    }

    pub fn with_resolver(allow: Vec<AllowEntry>, resolver: Arc<dyn Resolve>) -> Self {
        super::tls::init();
        Egress {
            allow: Arc::new(allow),
            resolver,
            clients: Arc::default(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }

    /// Checks `url` against the policy; returns the address to connect to.
    pub async fn check(&self, url: &Url) -> Result<SocketAddr, EgressError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::Credentials);
        }
        let port = url.port_or_known_default().ok_or(EgressError::InvalidUrl)?;
        let host = url.host().ok_or(EgressError::InvalidUrl)?;
        self.check_host(host, port).await
    }

    /// The policy for a host and port reached by something other than HTTP
    /// (a mail server): resolve, refuse any non-public answer unless
    /// allowed, and return the address to connect to (and pin).
    pub async fn check_server(&self, host: &str, port: u16) -> Result<SocketAddr, EgressError> {
        let host = match Host::parse(host).map_err(|_| EgressError::InvalidUrl)? {
            Host::Domain(_) => Host::Domain(host),
            Host::Ipv4(ip) => Host::Ipv4(ip),
            Host::Ipv6(ip) => Host::Ipv6(ip),
        };
        self.check_host(host, port).await
    }

    async fn check_host(&self, host: Host<&str>, port: u16) -> Result<SocketAddr, EgressError> {
        let shown = host.to_string();
        let (host_text, addrs) = match host {
            Host::Ipv4(ip) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Host::Ipv6(ip) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let addrs = self
                    .resolver
                    .resolve(&name, port)
                    .await
                    .map_err(|_| EgressError::Dns { host: name.clone() })?;
                if addrs.is_empty() {
                    return Err(EgressError::Dns { host: name });
                }
                (name, addrs)
            }
        };
        // Every answer must pass: a name that resolves to one public and one
        // private address is refused, not raced.
        for addr in &addrs {
            let allowed = self.allow.iter().any(|a| a.matches(&host_text, addr));
            if !allowed && !is_public(addr.ip()) {
                return Err(EgressError::Blocked { host: shown });
            }
        }
        Ok(addrs[0])
    }

    /// A client that connects only to `addr`, the checked address of `url`.
    /// Clients are cached by (host, address, timeout): building one costs a
    /// TLS configuration, and a new client cannot reuse connections.
    fn pinned_client(
        &self,
        url: &Url,
        addr: SocketAddr,
        total_timeout: bool,
    ) -> Result<reqwest::Client, EgressError> {
        let pin = match url.host() {
            Some(Host::Domain(name)) => Some(name.to_ascii_lowercase()),
            _ => None,
        };
        let key = (
            pin,
            addr,
            self.connect_timeout,
            total_timeout.then_some(self.timeout),
        );
        if let Some(client) = self.clients.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(client);
        }
        let client = self.build_pinned_client(url, addr, total_timeout)?;
        if let Ok(mut clients) = self.clients.lock() {
            if clients.len() >= MAX_CACHED_CLIENTS {
                clients.clear();
            }
            clients.insert(key, client.clone());
        }
        Ok(client)
    }

    fn build_pinned_client(
        &self,
        url: &Url,
        addr: SocketAddr,
        total_timeout: bool,
    ) -> Result<reqwest::Client, EgressError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .no_proxy();
        if total_timeout {
            builder = builder.timeout(self.timeout);
        }
        if let Some(Host::Domain(name)) = url.host() {
            // Pin: connect to the address that was checked, not a new lookup.
            builder = builder.resolve(name, addr);
        }
        builder.build().map_err(|_| EgressError::Connect {
            host: url.host_str().unwrap_or_default().to_owned(),
        })
    }

    /// A client for `url`'s server, pinned to its checked address, that
    /// follows no redirects: for a protocol client that makes its own
    /// requests to that one server (an MCP server).
    pub async fn client_for(&self, url: &str) -> Result<reqwest::Client, EgressError> {
        let url = Url::parse(url).map_err(|_| EgressError::InvalidUrl)?;
        let addr = self.check(&url).await?;
        self.pinned_client(&url, addr, false)
    }

    /// POSTs `body` and returns the response unread, for streaming. Redirects
    /// are not followed (a POST has no business being redirected); the caller
    /// applies its own first-byte and idle timeouts.
    pub async fn post_stream(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, EgressError> {
        let url = Url::parse(url).map_err(|_| EgressError::InvalidUrl)?;
        let addr = self.check(&url).await?;
        let host = url.host_str().unwrap_or_default().to_owned();
        self.pinned_client(&url, addr, false)?
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(&e, host))
    }

    /// Sends a request with no body, following checked redirects, and reads
    /// the answer up to the size cap.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
    ) -> Result<Fetched, EgressError> {
        self.send_body(method, url, headers, None).await
    }

    /// Sends a request, with `body` if given, and reads the answer up to the
    /// size cap. Redirects are followed (each checked again) for requests
    /// without a body; a request with one is not re-sent elsewhere.
    pub async fn send_body(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Fetched, EgressError> {
        self.fetch(method, url, headers, body, true).await
    }

    /// Like `send_body`, but a redirect is returned as it is, never followed
    /// (for a protocol that judges redirects itself, like OAuth).
    pub async fn send_once(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Fetched, EgressError> {
        self.fetch(method, url, headers, body, false).await
    }

    async fn fetch(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        follow: bool,
    ) -> Result<Fetched, EgressError> {
        let mut url = Url::parse(url).map_err(|_| EgressError::InvalidUrl)?;
        let mut headers = headers;
        for _ in 0..=MAX_REDIRECTS {
            let addr = self.check(&url).await?;
            let host = url.host_str().unwrap_or_default().to_owned();
            let client = self.pinned_client(&url, addr, true)?;
            let mut request = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let mut res = request
                .send()
                .await
                .map_err(|e| send_error(&e, host.clone()))?;
            if follow
                && body.is_none()
                && res.status().is_redirection()
                && let Some(location) = res.headers().get(LOCATION).and_then(|l| l.to_str().ok())
            {
                let next = url.join(location).map_err(|_| EgressError::InvalidUrl)?;
                if next.origin() != url.origin() {
                    for name in CREDENTIAL_HEADERS {
                        headers.remove(HeaderName::from_static(name));
                    }
                    headers.remove(AUTHORIZATION);
                }
                url = next;
                continue;
            }
            let status = res.status();
            let response_headers = res.headers().clone();
            let mut body = Vec::new();
            loop {
                match res.chunk().await {
                    Ok(Some(chunk)) => {
                        if body.len() + chunk.len() > self.max_response_bytes {
                            return Err(EgressError::TooLarge {
                                limit: self.max_response_bytes,
                            });
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) if e.is_timeout() => return Err(EgressError::Timeout { host }),
                    Err(_) => return Err(EgressError::Broken { host }),
                }
            }
            return Ok(Fetched {
                status,
                headers: response_headers,
                body,
            });
        }
        Err(EgressError::TooManyRedirects)
    }
}

/// What a failed send means: no connection at all (nothing sent), a
/// timeout, or a connection that broke after the request may have gone out.
fn send_error(err: &reqwest::Error, host: String) -> EgressError {
    if err.is_connect() {
        EgressError::Connect { host }
    } else if err.is_timeout() {
        EgressError::Timeout { host }
    } else {
        EgressError::Broken { host }
    }
}

/// IPv4 inside IPv6 (mapped, compatible, NAT64, 6to4, SIIT) counts as that IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // ::a.b.c.d (deprecated IPv4-compatible), but not :: or ::1 themselves.
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return Some(from(s[6], s[7]));
    }
    // ::ffff:0:a.b.c.d, IPv4-translated (SIIT, RFC 7915).
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return Some(from(s[6], s[7]));
    }
    // 64:ff9b::/96 NAT64 well-known prefix.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(from(s[6], s[7]));
    }
    // 2002::/16 6to4.
    if s[0] == 0x2002 {
        return Some(from(s[1], s[2]));
    }
    None
}

fn v4_is_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15 benchmarking
        || a >= 240) // 240/4 reserved
}

/// True only for globally routable unicast addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_public(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return v4_is_public(v4);
            }
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (incl. fd00:ec2::254)
                || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
                || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // 64:ff9b:1::/48 local-use NAT64
                || (s[0] == 0x100 && s[1..4] == [0; 3])) // discard-only
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// DNS answers the test decides: the data, not the code, is fake.
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Resolve for Table {
        fn resolve<'a>(
            &'a self,
            host: &'a str,
            port: u16,
        ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
            let answer = self
                .0
                .get(host)
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"));
            Box::pin(async move { answer })
        }
    }

    fn table() -> Arc<Table> {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        Arc::new(Table(HashMap::from([
            ("localhost", vec![ip("127.0.0.1"), ip("::1")]),
            ("evil.test", vec![ip("127.0.0.1")]),
            ("127.0.0.1.nip.io", vec![ip("127.0.0.1")]),
            ("metadata.google.internal", vec![ip("169.254.169.254")]),
            ("mixed.test", vec![ip("93.184.216.34"), ip("10.0.0.1")]),
            ("v6only.test", vec![ip("fd00::1")]),
            ("public.test", vec![ip("93.184.216.34")]),
        ])))
    }

    /// Why a hostile URL must be refused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Why {
        Blocked,
        Dns,
        Scheme,
        Credentials,
        Invalid,
    }
    use Why::*;

    const HOSTILE: &[(&str, Why)] = &[
        ("http://127.0.0.1/", Blocked),
        ("http://127.0.0.1:11434/v1", Blocked),
        ("http://localhost/", Blocked),
        ("http://LOCALHOST./", Blocked),
        ("http://127.1/", Blocked),
        ("http://0177.0.0.1/", Blocked),
        ("http://0x7f.0.0.1/", Blocked),
        ("http://0x7f.1/", Blocked),
        ("http://2130706433/", Blocked),
        ("http://0x7f000001/", Blocked),
        ("http://017700000001/", Blocked),
        ("http://[::1]/", Blocked),
        ("http://[::ffff:127.0.0.1]/", Blocked),
        ("http://[::ffff:7f00:1]/", Blocked),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/", Blocked),
        ("http://[::127.0.0.1]/", Blocked),
        ("http://[64:ff9b::7f00:1]/", Blocked),
        ("http://[64:ff9b:1::a00:1]/", Blocked),
        ("http://[64:ff9b:1::808:808]/", Blocked),
        ("http://[::ffff:0:7f00:1]/", Blocked),
        ("http://[::ffff:0:a00:1]/", Blocked),
        ("http://[::ffff:0:a9fe:a9fe]/", Blocked),
        ("http://[2002:7f00:1::]/", Blocked),
        ("http://0.0.0.0/", Blocked),
        ("http://0/", Blocked),
        ("http://[::]/", Blocked),
        ("http://10.0.0.1/", Blocked),
        ("http://172.16.0.1/", Blocked),
        ("http://172.31.255.255/", Blocked),
        ("http://192.168.1.1/", Blocked),
        ("http://169.254.169.254/latest/meta-data/", Blocked),
        ("http://[::ffff:a9fe:a9fe]/", Blocked),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            Blocked,
        ),
        ("http://[fd00:ec2::254]/", Blocked),
        ("http://[fe80::1]/", Blocked),
        ("http://[fc00::1]/", Blocked),
        ("http://100.64.0.1/", Blocked),
        ("http://198.18.0.1/", Blocked),
        ("http://224.0.0.1/", Blocked),
        ("http://255.255.255.255/", Blocked),
        ("http://240.0.0.1/", Blocked),
        ("http://evil.test/", Blocked),
        ("http://127.0.0.1.nip.io/", Blocked),
        ("http://mixed.test/", Blocked),
        ("http://v6only.test/", Blocked),
        ("http://user:pass@public.test/", Credentials),
        ("http://user@public.test/", Credentials),
        ("ftp://public.test/", Scheme),
        ("file:///etc/passwd", Scheme),
        ("gopher://public.test/", Scheme),
        ("http://no-such-host.test/", Dns),
        ("http://[::1", Invalid),
    ];

    fn why(err: &EgressError) -> Why {
        match err {
            EgressError::Blocked { .. } => Blocked,
            EgressError::Dns { .. } => Dns,
            EgressError::Scheme => Scheme,
            EgressError::Credentials => Credentials,
            EgressError::InvalidUrl => Invalid,
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_hostile_url_is_refused_for_its_reason() {
        let egress = Egress::with_resolver(vec![], table());
        assert!(HOSTILE.len() >= 30);
        for (raw, expected) in HOSTILE {
            let result = match Url::parse(raw) {
                Ok(url) => egress.check(&url).await,
                Err(_) => Err(EgressError::InvalidUrl),
            };
            match result {
                Ok(addr) => panic!("{raw} was allowed: {addr}"),
                Err(err) => assert_eq!(why(&err), *expected, "{raw}: {err}"),
            }
        }
    }

    /// Answers a name with one address the first time and another after.
    struct Flip {
        calls: std::sync::atomic::AtomicUsize,
        first: IpAddr,
        then: IpAddr,
    }

    impl Resolve for Flip {
        fn resolve<'a>(
            &'a self,
            _host: &'a str,
            port: u16,
        ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let ip = if n == 0 { self.first } else { self.then };
            Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) })
        }
    }

    /// A server that answers `who` with its name and counts connections.
    async fn named_server(
        addr: SocketAddr,
        name: &'static str,
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/who",
            axum::routing::get(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { name }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, hits)
    }

    #[tokio::test]
    async fn a_name_is_resolved_once_and_the_connection_pinned_to_the_checked_address() {
        // The checked address (allowed by the operator, as a public one
        // would be) and, on the same port, a private one a rebinding DNS
        // answers next.
        let (checked, checked_hits) = named_server("127.0.0.1:0".parse().unwrap(), "checked").await;
        let private = SocketAddr::new("127.0.0.2".parse().unwrap(), checked.port());
        let (_, private_hits) = named_server(private, "private").await;
        let resolver = Arc::new(Flip {
            calls: Default::default(),
            first: checked.ip(),
            then: private.ip(),
        });
        let allow = vec![AllowEntry::parse(&checked.to_string()).unwrap()];
        let egress = Egress::with_resolver(allow, resolver.clone());
        let url = format!("http://rebind.test:{}/who", checked.port());

        let first = egress
            .send(Method::GET, &url, HeaderMap::new())
            .await
            .unwrap();
        assert_eq!(first.body, b"checked");
        assert_eq!(
            resolver.calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the client did not look the name up again"
        );
        // The next answer is private: refused, not connected to.
        assert!(matches!(
            egress.send(Method::GET, &url, HeaderMap::new()).await,
            Err(EgressError::Blocked { .. })
        ));
        assert_eq!(checked_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(private_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn public_addresses_pass() {
        let egress = Egress::with_resolver(vec![], table());
        for raw in [
            "https://public.test/v1/models",
            "http://93.184.216.34/",
            "http://[2606:4700::1111]/",
        ] {
            assert!(
                egress.check(&Url::parse(raw).unwrap()).await.is_ok(),
                "{raw}"
            );
        }
    }

    #[tokio::test]
    async fn the_allowlist_opens_exactly_one_host_and_port() {
        let allow = vec![AllowEntry::parse("127.0.0.1:11434").unwrap()];
        let egress = Egress::with_resolver(allow, table());
        let check = |raw: &'static str| {
            let egress = egress.clone();
            async move { egress.check(&Url::parse(raw).unwrap()).await }
        };
        assert!(check("http://127.0.0.1:11434/v1").await.is_ok());
        assert!(
            check("http://localhost:11434/v1").await.is_err(),
            "localhost also resolves to ::1"
        );
        assert!(check("http://127.0.0.1:11435/v1").await.is_err());
        assert!(
            check("http://[::ffff:127.0.0.1]:11434/").await.is_ok(),
            "same address, other spelling"
        );
        let named =
            Egress::with_resolver(vec![AllowEntry::parse("localhost:11434").unwrap()], table());
        assert!(
            named
                .check(&Url::parse("http://localhost:11434/").unwrap())
                .await
                .is_ok()
        );
    }

    #[test]
    fn allow_entries_parse() {
        assert_eq!(
            AllowEntry::parse("[::1]:8000"),
            Some(AllowEntry {
                host: "::1".into(),
                port: 8000
            })
        );
        assert_eq!(AllowEntry::parse("ollama:11434").unwrap().host, "ollama");
        assert_eq!(AllowEntry::parse("no-port"), None);
        assert_eq!(AllowEntry::parse(":80"), None);
    }

    /// A real local server: answers /ok, and redirects elsewhere.
    async fn local_server() -> SocketAddr {
        use axum::{Router, response::Redirect, routing::get};
        let app =
            Router::new()
                .route("/ok", get(|| async { "fine" }))
                .route(
                    "/to-metadata",
                    get(|| async {
                        Redirect::temporary("http://169.254.169.254/latest/meta-data/")
                    }),
                )
                .route(
                    "/to-other-port",
                    get(|| async { Redirect::temporary("http://127.0.0.1:9/") }),
                )
                .route("/to-ok", get(|| async { Redirect::temporary("/ok") }))
                .route("/loop", get(|| async { Redirect::temporary("/loop") }))
                .route("/big", get(|| async { "x".repeat(10_000) }))
                .route(
                    "/peer",
                    get(
                        |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                            SocketAddr,
                        >| async move { peer.port().to_string() },
                    ),
                );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap()
        });
        addr
    }

    #[tokio::test]
    async fn requests_to_one_host_reuse_a_connection() {
        let addr = local_server().await;
        let allow = vec![AllowEntry::parse(&addr.to_string()).unwrap()];
        let egress = Egress::with_resolver(allow, table());
        let url = format!("http://{addr}/peer");
        let first = egress
            .send(Method::GET, &url, HeaderMap::new())
            .await
            .unwrap();
        let second = egress
            .send(Method::GET, &url, HeaderMap::new())
            .await
            .unwrap();
        assert_eq!(
            first.body, second.body,
            "the second request came from the same client port, over the same connection"
        );
        // A clone shares the clients; a different timeout gets its own.
        let mut shorter = egress.clone();
        shorter.timeout = Duration::from_secs(7);
        let third = shorter
            .send(Method::GET, &url, HeaderMap::new())
            .await
            .unwrap();
        assert_ne!(third.body, first.body);
    }

    #[tokio::test]
    async fn redirects_are_checked_again_and_limits_hold() {
        let addr = local_server().await;
        let allow = vec![AllowEntry::parse(&addr.to_string()).unwrap()];
        let mut egress = Egress::with_resolver(allow, table());
        let get = |egress: &Egress, path: &str| {
            let egress = egress.clone();
            let url = format!("http://{addr}{path}");
            async move { egress.send(Method::GET, &url, HeaderMap::new()).await }
        };
        let ok = get(&egress, "/ok").await.unwrap();
        assert_eq!(
            (ok.status, ok.body.as_slice()),
            (StatusCode::OK, b"fine".as_slice())
        );
        assert_eq!(get(&egress, "/to-ok").await.unwrap().body, b"fine");
        assert!(matches!(
            get(&egress, "/to-metadata").await,
            Err(EgressError::Blocked { .. })
        ));
        assert!(matches!(
            get(&egress, "/to-other-port").await,
            Err(EgressError::Blocked { .. })
        ));
        assert_eq!(
            get(&egress, "/loop").await.unwrap_err(),
            EgressError::TooManyRedirects
        );
        egress.max_response_bytes = 1_000;
        assert_eq!(
            get(&egress, "/big").await.unwrap_err(),
            EgressError::TooLarge { limit: 1_000 }
        );
        // Without the allowlist entry, the same local server is refused.
        let closed = Egress::with_resolver(vec![], table());
        assert!(matches!(
            get(&closed, "/ok").await,
            Err(EgressError::Blocked { .. })
        ));
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        for (v6, public) in [
            ("::ffff:8.8.8.8", true),
            ("::ffff:10.0.0.1", false),
            ("64:ff9b::808:808", true),
            ("64:ff9b::a00:1", false),
            ("2002:c0a8:101::", false),
            ("2002:808:808::", true),
            ("::ffff:0:808:808", true),
            ("::ffff:0:a00:1", false),
            ("64:ff9b:1::808:808", false),
        ] {
            assert_eq!(is_public(v6.parse().unwrap()), public, "{v6}");
        }
    }
}
