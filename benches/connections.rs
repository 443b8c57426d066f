//! `cargo bench --bench connections`: a real `facelift serve` (a child process, its open-file
//! limit raised to the hard limit at start) under connection floods from other processes on
//! loopback. For each flood: how long a new client's `GET /healthz` takes (a new connection
//! each time, p50/p99/max of 200) against the same figure with no flood, taken in one run;
//! whether a real login still succeeds; how many connections the server holds. Then slow
//! clients: headers sent a byte a second, a device body sent a byte a second, and how long
//! the server keeps them. Needs `scripts/setup` first and `../shared/data`.
//!
//! The flood is held by helper processes (this bench run again with `HOLD_CONNECTIONS` set),
//! 10,000 connections each, since one process may hold only as many as its own file limit.

#[path = "../tests/common/child_server.rs"]
mod child_server;

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use child_server::ChildServer;
use facelift::access::pad_eval;
use reqwest::multipart::{Form, Part};

const HOLD_VARIABLE: &str = "HOLD_CONNECTIONS";
const PER_HELPER: usize = 10_000;

fn main() -> anyhow::Result<()> {
    if let Ok(plan) = std::env::var(HOLD_VARIABLE) {
        return hold(&plan);
    }
    tokio::runtime::Runtime::new()?.block_on(bench())
}

/// A helper: opens connections as the plan says ("port first_address addresses count"),
/// reports how many it opened, holds them until its input closes, then reports how many the
/// server had closed meanwhile.
fn hold(plan: &str) -> anyhow::Result<()> {
    let fields: Vec<u32> = plan
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let &[port, first, addresses, count] = fields.as_slice() else {
        anyhow::bail!("a plan is: port first_address addresses count");
    };
    let server = SocketAddr::from(([127, 0, 0, 1], port as u16));
    let mut held = Vec::with_capacity(count as usize);
    for i in 0..count {
        let host = first + i % addresses;
        let local = Ipv4Addr::new(127, 0, (host / 250) as u8, (host % 250 + 2) as u8);
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::from((local, 0)).into())?;
        if socket.connect(&server.into()).is_ok() {
            held.push(TcpStream::from(socket));
        }
    }
    println!("{}", held.len());
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let closed = held.iter_mut().map(closed_by_peer).filter(|&c| c).count();
    println!("{closed}");
    Ok(())
}

fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A flood held by helper processes.
struct Flood {
    helpers: Vec<Child>,
    opened: usize,
}

impl Flood {
    fn open(port: u16, addresses: u32, total: usize) -> anyhow::Result<Self> {
        let mut helpers = Vec::new();
        let mut opened = 0;
        for (n, start) in (0..total).step_by(PER_HELPER).enumerate() {
            let count = PER_HELPER.min(total - start);
            // each helper starts on its own addresses where there are enough of them
            let first = (n as u32 * 97) % addresses.max(1);
            let mut child = Command::new(std::env::current_exe()?)
                .env(HOLD_VARIABLE, format!("{port} {first} {addresses} {count}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            opened += read_number(&mut child)?;
            helpers.push(child);
        }
        Ok(Self { helpers, opened })
    }

    /// Ends the flood; returns how many of its connections the server had closed.
    fn close(mut self) -> anyhow::Result<usize> {
        let mut closed = 0;
        for child in &mut self.helpers {
            drop(child.stdin.take());
            closed += read_number(child)?;
            child.wait()?;
        }
        Ok(closed)
    }
}

fn read_number(child: &mut Child) -> anyhow::Result<usize> {
    let out = child
        .stdout
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("no output"))?;
    let mut line = String::new();
    std::io::BufReader::new(out.by_ref().take(32)).read_line(&mut line)?;
    Ok(line.trim().parse()?)
}

/// `GET /healthz` on a new connection from 127.0.0.1, `samples` times; the times sorted, in ms
/// (a failure counts as 10 s).
fn healthz_times(port: u16, samples: usize) -> Vec<f64> {
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            let answered = (|| -> std::io::Result<bool> {
                let address = SocketAddr::from(([127, 0, 0, 1], port));
                let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                let mut answer = Vec::new();
                stream.read_to_end(&mut answer)?;
                Ok(answer.starts_with(b"HTTP/1.1 200"))
            })();
            if matches!(answered, Ok(true)) {
                start.elapsed().as_secs_f64() * 1e3
            } else {
                10_000.0
            }
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn login(base: &str, frame: &[u8]) -> anyhow::Result<(u16, f64)> {
    let client = reqwest::Client::new();
    let form = Form::new().part("frame", Part::bytes(frame.to_vec()).file_name("f.jpg"));
    let start = Instant::now();
    let answer = client
        .post(format!("{base}/api/v1/login"))
        .multipart(form)
        .send()
        .await?;
    Ok((
        answer.status().as_u16(),
        start.elapsed().as_secs_f64() * 1e3,
    ))
}

/// Opens `count` connections that each send `opening` and then a byte a second; returns the
/// longest any stayed open and what the server answered, if anything.
fn trickle(port: u16, count: usize, opening: &[u8], limit: Duration) -> (f64, String) {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut streams: Vec<(TcpStream, Option<f64>)> = (0..count)
        .filter_map(|_| TcpStream::connect(address).ok())
        .map(|mut s| {
            let _ = s.write_all(opening);
            let _ = s.set_nonblocking(true);
            (s, None)
        })
        .collect();
    let start = Instant::now();
    let mut answer = String::from("(nothing)");
    while start.elapsed() < limit && streams.iter().any(|(_, closed)| closed.is_none()) {
        for (stream, closed) in streams.iter_mut().filter(|(_, c)| c.is_none()) {
            let mut buffer = [0u8; 512];
            match stream.read(&mut buffer) {
                Ok(0) => *closed = Some(start.elapsed().as_secs_f64()),
                Ok(n) if answer == "(nothing)" => {
                    let text = String::from_utf8_lossy(&buffer[..n]);
                    answer = text.lines().next().unwrap_or_default().to_string();
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let _ = stream.write_all(b"a");
                }
                Err(_) => *closed = Some(start.elapsed().as_secs_f64()),
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let longest = streams
        .iter()
        .map(|(_, closed)| closed.unwrap_or(f64::INFINITY))
        .fold(0.0, f64::max);
    (longest, answer)
}

async fn bench() -> anyhow::Result<()> {
    let server = ChildServer::start(&[("FACELIFT_PAD", "passive")]).await?;
    let photo = image::open("../shared/data/deepface-faces/img4.jpg")?.to_rgb8();
    let frame = pad_eval::jpeg(&pad_eval::camera_frame(&photo), 95);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))?;
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>()
        .join(" / ");
    println!("server's open-file limit (soft / hard): {files}");
    println!(
        "flood                         server fds      healthz p50 / p99 / max ms   vs idle p50  login"
    );
    let idle = healthz_times(server.port, 200);
    let (status, ms) = login(&server.base, &frame).await?;
    let fds = server.open_fds().unwrap_or(0);
    println!(
        "{:<29} {fds:>14}  {:>8.2} / {:>6.2} / {:>7.2}  {:>10.2}  {status} in {ms:.0} ms",
        "none",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        percentile(&idle, 1.0),
        1.0
    );
    for (name, addresses) in [
        ("20,000 idle from 1 address", 1u32),
        ("20,000 idle from 200 addresses", 200),
    ] {
        let flood = Flood::open(server.port, addresses, 20_000)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let held = server.open_fds().unwrap_or(0);
        let times = healthz_times(server.port, 200);
        let (status, ms) = login(&server.base, &frame).await?;
        let opened = flood.opened;
        let closed = flood.close()?;
        println!(
            "{name:<29} {held:>14}  {:>8.2} / {:>6.2} / {:>7.2}  {:>10.2}  {status} in {ms:.0} ms",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times, 1.0),
            percentile(&times, 0.5) / percentile(&idle, 0.5),
        );
        println!("    (the flood opened {opened}; the server had closed {closed} of them)");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let limit = Duration::from_secs(120);
    let port = server.port;
    let (headers, answer) = tokio::task::spawn_blocking(move || {
        trickle(port, 200, b"GET /healthz HTTP/1.1\r\n", limit)
    })
    .await?;
    println!(
        "200 clients sending headers at 1 byte/s: all closed within {headers:.0} s ({answer})"
    );
    let (body, answer) = tokio::task::spawn_blocking(move || {
        trickle(
            port,
            200,
            b"POST /api/v1/device/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n",
            limit,
        )
    })
    .await?;
    println!("200 device bodies at 1 byte/s: all closed within {body:.0} s ({answer})");
    drop(server);
    Ok(())
}
