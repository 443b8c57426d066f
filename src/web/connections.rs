//! Who may hold a connection, and for how long. Connections are capped in all and per client
//! address; at the total cap the connection quiet longest with nothing in flight is closed to
//! make room (so idle connections, however many, cannot lock everyone out), and a connection
//! refused is closed at once. Connections quiet for too long are closed, and a request body
//! must keep arriving.

use std::collections::HashMap;
use std::future::{Future, Ready};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::accept::Accept;
use futures_util::task::AtomicWaker;
use http_body::Body as _;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{AppState, WebError};
use crate::config::WebSettings;

/// Descriptors kept back from the connection cap for the database, the models, log files
/// and the server's own requests to devices.
const DESCRIPTOR_RESERVE: usize = 512;

/// Connections may be closing (evicted but not yet dropped by their task) beyond the cap by
/// at most this many before new ones are refused outright.
const CLOSING_ALLOWANCE: usize = 256;

/// The limits on connections, from the settings and the process's open-file limit.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub idle: Duration,
    /// Trusted proxies: every client behind them shares their address.
    pub exempt: Vec<ipnet::IpNet>,
}

impl ConnectionLimits {
    pub fn from_settings(web: &WebSettings) -> Self {
        let descriptors = open_file_limit().saturating_sub(DESCRIPTOR_RESERVE as u64);
        let affordable = usize::try_from(descriptors).unwrap_or(usize::MAX).max(64);
        Self {
            max_connections: web.max_connections.unwrap_or(affordable).min(affordable),
            max_per_address: web.max_connections_per_address.max(1),
            idle: Duration::from_secs(web.idle_timeout_secs.max(1)),
            exempt: web.trusted_proxies.clone(),
        }
    }
}

/// The soft limit on open files (descriptors) of this process.
fn open_file_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Raises the soft open-file limit to the hard one (a default soft limit of 1024 would cap a
/// server at about 500 connections) and returns it.
pub fn raise_open_file_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The connections open now.
#[derive(Clone)]
pub struct ConnectionTable {
    inner: Arc<Mutex<Table>>,
    limits: Arc<ConnectionLimits>,
    epoch: Instant,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Connection>>,
    per_address: HashMap<IpAddr, usize>,
    closing: usize,
}

/// One connection's shared state: its stream, its service and the table all see it.
struct Connection {
    address: IpAddr,
    /// Milliseconds since the table's epoch at the last byte either way.
    last_active_ms: AtomicU64,
    in_flight: AtomicUsize,
    closing: AtomicBool,
    /// The connection's task, woken to notice `closing`.
    waker: AtomicWaker,
}

/// Why a connection was closed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    PerAddress,
    Full,
}

impl ConnectionTable {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            inner: Arc::default(),
            limits: Arc::new(limits),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // the table's invariants hold between statements, so a panic elsewhere leaves it usable
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets a connection from `address` in, or says why not. At the total cap the connection
    /// quiet longest with nothing in flight is told to close, to make room.
    pub fn admit(&self, address: IpAddr) -> Result<Slot, Refusal> {
        let exempt = self.limits.exempt.iter().any(|net| net.contains(&address));
        let now = self.now_ms();
        let mut table = self.lock();
        let from_address = table.per_address.get(&address).copied().unwrap_or(0);
        if !exempt && from_address >= self.limits.max_per_address {
            return Err(Refusal::PerAddress);
        }
        let live = table.open.len() - table.closing;
        if live >= self.limits.max_connections {
            if table.closing >= CLOSING_ALLOWANCE {
                return Err(Refusal::Full);
            }
            // ties (the same millisecond) go to the older connection
            let quietest = table
                .open
                .iter()
                .filter(|(_, c)| !c.closing.load(Ordering::Relaxed))
                .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
                .min_by_key(|(id, c)| (c.last_active_ms.load(Ordering::Relaxed), **id))
                .map(|(_, c)| Arc::clone(c));
            let Some(quietest) = quietest else {
                return Err(Refusal::Full);
            };
            quietest.close();
            table.closing += 1;
            metrics::counter!("facelift_connections_closed_total", "why" => "room").increment(1);
        }
        let id = table.next_id;
        table.next_id += 1;
        let connection = Arc::new(Connection {
            address,
            last_active_ms: AtomicU64::new(now),
            in_flight: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        table.open.insert(id, Arc::clone(&connection));
        *table.per_address.entry(address).or_default() += 1;
        metrics::gauge!("facelift_connections_open").increment(1.0);
        Ok(Slot {
            table: self.clone(),
            id,
            connection,
        })
    }

    /// Closes the connections that have had nothing in flight and no bytes either way for
    /// longer than the idle limit; returns how many.
    pub fn close_idle(&self) -> usize {
        let idle_ms = u64::try_from(self.limits.idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let mut table = self.lock();
        let mut closed = 0;
        for connection in table.open.values() {
            let quiet = now.saturating_sub(connection.last_active_ms.load(Ordering::Relaxed));
            if quiet > idle_ms
                && connection.in_flight.load(Ordering::Relaxed) == 0
                && !connection.closing.load(Ordering::Relaxed)
            {
                connection.close();
                closed += 1;
            }
        }
        table.closing += closed;
        if closed > 0 {
            metrics::counter!("facelift_connections_closed_total", "why" => "idle")
                .increment(closed as u64);
        }
        closed
    }

    /// Every second, closes the connections idle too long, until aborted.
    pub fn spawn_idle_closer(&self) -> tokio::task::JoinHandle<()> {
        let table = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                table.close_idle();
            }
        })
    }
}

impl Connection {
    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// A connection's place in the table, given up when its stream is dropped.
pub struct Slot {
    table: ConnectionTable,
    id: u64,
    connection: Arc<Connection>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        if table.open.remove(&self.id).is_some() {
            if self.connection.closing.load(Ordering::Acquire) {
                table.closing = table.closing.saturating_sub(1);
            }
            let address = self.connection.address;
            if let Some(count) = table.per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    table.per_address.remove(&address);
                }
            }
            metrics::gauge!("facelift_connections_open").decrement(1.0);
        }
    }
}

/// The acceptor for the server: a connection over a limit is closed at once (with a reset,
/// so that neither side keeps it in TIME_WAIT); others are tracked.
#[derive(Clone)]
pub struct LimitAcceptor {
    table: ConnectionTable,
}

impl LimitAcceptor {
    pub fn new(table: ConnectionTable) -> Self {
        Self { table }
    }
}

impl<S> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Tracked<TcpStream>;
    type Service = CountInFlight<S>;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(self.admit(stream, service))
    }
}

impl LimitAcceptor {
    fn admit<S>(
        &self,
        stream: TcpStream,
        service: S,
    ) -> io::Result<(Tracked<TcpStream>, CountInFlight<S>)> {
        let address = stream.peer_addr()?.ip();
        match self.table.admit(address) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                let connection = Arc::clone(&slot.connection);
                let tracked = Tracked {
                    inner: stream,
                    slot,
                };
                let service = CountInFlight {
                    inner: service,
                    connection,
                    epoch: self.table.epoch,
                };
                Ok((tracked, service))
            }
            Err(refusal) => {
                let why = match refusal {
                    Refusal::PerAddress => "per_address",
                    Refusal::Full => "full",
                };
                metrics::counter!("facelift_connections_refused_total", "why" => why).increment(1);
                let socket = socket2::SockRef::from(&stream);
                let _ = socket.set_linger(Some(Duration::ZERO));
                Err(io::Error::other("connection over the limit"))
            }
        }
    }
}

/// A stream that notes when bytes last moved and ends (as if the client had closed it) when
/// the table tells it to close.
pub struct Tracked<S> {
    inner: S,
    slot: Slot,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        let now = self.slot.table.now_ms();
        self.slot
            .connection
            .last_active_ms
            .store(now, Ordering::Relaxed);
    }

    fn closing(&self, cx: &Context<'_>) -> bool {
        let connection = &self.slot.connection;
        connection.waker.register(cx.waker());
        connection.closing.load(Ordering::Acquire)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing(cx) {
            return Poll::Ready(Ok(())); // end of stream
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing(cx) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The connection's service, counting its requests in flight (until the answer's body ends,
/// so that a panel's event stream counts) so that a busy connection is never closed as idle.
#[derive(Clone)]
pub struct CountInFlight<S> {
    inner: S,
    connection: Arc<Connection>,
    epoch: Instant,
}

struct InFlight {
    connection: Arc<Connection>,
    epoch: Instant,
}

impl InFlight {
    fn new(connection: Arc<Connection>, epoch: Instant) -> Self {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        Self { connection, epoch }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // the idle clock starts when the answer ends, not when the request began
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.connection.last_active_ms.store(now, Ordering::Relaxed);
        self.connection.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type BoxedFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<axum::http::Request<B>> for CountInFlight<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxedFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let guard = InFlight::new(Arc::clone(&self.connection), self.epoch);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                Body::new(GuardedBody {
                    inner: body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// An answer's body that keeps its request counted in flight until it ends.
struct GuardedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body must arrive within `web.body_timeout_secs`, plus a second for every
/// `web.body_min_rate` bytes received (Apache mod_reqtimeout's rule, `body=20,MinRate=500`);
/// a body slower than that is answered 408 and its connection closed.
///
/// What the handler left unread (an upload refused before it was read: 503 `busy`, 403) is
/// read and dropped before the answer goes out, up to the body limit: a server that closes a
/// connection with unread bytes resets it, and the reset can destroy the answer before the
/// client, still sending, reads it.
pub async fn request_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let web = &state.settings.web;
    let too_slow = Arc::new(AtomicBool::new(false));
    let first = Instant::now() + Duration::from_secs(web.body_timeout_secs);
    let bytes_per_second = web.body_min_rate.max(1);
    let flag = Arc::clone(&too_slow);
    let shared = Arc::new(Mutex::new(None));
    let request = request.map(|inner| {
        *lock_body(&shared) = Some(DeadlineBody {
            inner,
            first,
            bytes_per_second,
            received: 0,
            sleep: None,
            too_slow: flag,
        });
        Body::new(SharedBody(Arc::clone(&shared)))
    });
    let mut response = next.run(request).await;
    if too_slow.load(Ordering::Acquire) {
        let mut refused = WebError::BodyTooSlow.into_response();
        refused
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return refused;
    }
    let leftover = lock_body(&shared).take();
    if let Some(body) = leftover
        && !drain(body, state.max_body_bytes).await
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

type SharedSlot = Arc<Mutex<Option<DeadlineBody>>>;

fn lock_body(slot: &SharedSlot) -> std::sync::MutexGuard<'_, Option<DeadlineBody>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads what is left of `body`, at most `limit` bytes and at the body's pace; true when it
/// ended.
async fn drain(mut body: DeadlineBody, limit: usize) -> bool {
    let mut read = 0usize;
    while !http_body::Body::is_end_stream(&body) {
        if read > limit {
            return false;
        }
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) => return false,
            None => break,
        }
    }
    true
}

/// The handler's view of the request body; the middleware keeps the body itself, to drain
/// what the handler leaves.
struct SharedBody(SharedSlot);

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match lock_body(&self.0).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock_body(&self.0)
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock_body(&self.0)
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

struct DeadlineBody {
    inner: Body,
    first: Instant,
    bytes_per_second: u64,
    received: u64,
    /// Made when the body first has to wait, so a body that is there at once costs no timer.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    too_slow: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn deadline(&self) -> Instant {
        self.first + Duration::from_secs(self.received / self.bytes_per_second)
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline().into();
                    if let Some(sleep) = this.sleep.as_mut() {
                        sleep.as_mut().reset(deadline);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = this.deadline();
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.too_slow.store(true, Ordering::Release);
                    let late =
                        io::Error::new(io::ErrorKind::TimedOut, "the request body came too slowly");
                    return Poll::Ready(Some(Err(axum::Error::new(late))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
