//! The USB serial link: `\n`-terminated ASCII lines both ways (see `SerialLine`), pumped by one
//! thread per port because serial I/O blocks.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serialport::SerialPort;

pub const BAUD_RATE: u32 = 115_200;
/// A line longer than this is noise on the wire, not a message.
const MAX_LINE: usize = 256;
const POLL: Duration = Duration::from_millis(20);
const EIO: i32 = 5;

/// Opens a serial port (or a pseudo-terminal) for the line protocol.
pub fn open(path: &Path) -> Result<Box<dyn SerialPort>, serialport::Error> {
    serialport::new(path.to_string_lossy(), BAUD_RATE)
        .timeout(POLL)
        .open()
}

/// Moves lines until `stop` is set or the port fails: every line in `outgoing` is written at
/// once (by a writer thread on a clone of the port), every complete line read is handed to
/// `incoming`. Answers why it stopped.
pub fn pump_lines(
    port: &mut dyn SerialPort,
    outgoing: &mpsc::Receiver<String>,
    mut incoming: impl FnMut(String) + Send,
    stop: &AtomicBool,
) -> io::Result<()> {
    port.set_timeout(POLL)?;
    let mut writer = port.try_clone().map_err(io::Error::other)?;
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let read = read_lines(port, &mut incoming, stop, &failed);
            failed.store(true, Ordering::Relaxed);
            read
        });
        let mut written = Ok(());
        while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
            match outgoing.recv_timeout(POLL) {
                Ok(line) => {
                    written = writer
                        .write_all(line.as_bytes())
                        .and_then(|()| writer.write_all(b"\n"))
                        .and_then(|()| writer.flush());
                    if written.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        failed.store(true, Ordering::Relaxed);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the serial reader panicked")));
        read.and(written)
    })
}

fn read_lines(
    port: &mut dyn SerialPort,
    incoming: &mut impl FnMut(String),
    stop: &AtomicBool,
    failed: &AtomicBool,
) -> io::Result<()> {
    let mut pending = Vec::new();
    let mut buffer = [0u8; 256];
    while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
        match port.read(&mut buffer) {
            Ok(0) => {}
            Ok(n) => {
                for &byte in &buffer[..n] {
                    if byte == b'\n' {
                        let line = String::from_utf8_lossy(&pending).trim().to_string();
                        pending.clear();
                        if !line.is_empty() {
                            incoming(line);
                        }
                    } else if pending.len() < MAX_LINE {
                        pending.push(byte);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A pumping thread; dropping it stops the thread.
pub struct LinePump {
    pub outgoing: mpsc::Sender<String>,
    stop: Arc<AtomicBool>,
}

impl LinePump {
    /// Pumps the port at `path`, reopening it after a failure (a board unplugged and plugged
    /// back in).
    pub fn spawn_reopening(
        path: &Path,
        incoming: impl FnMut(String) + Send + 'static,
    ) -> io::Result<Self> {
        let (outgoing, to_write) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let path = path.to_path_buf();
        let stopped = Arc::clone(&stop);
        let mut incoming = incoming;
        std::thread::Builder::new()
            .name("serial-link".into())
            .spawn(move || {
                let mut reported = false;
                while !stopped.load(Ordering::Relaxed) {
                    match open(&path) {
                        Ok(mut port) => {
                            reported = false;
                            tracing::info!(port = %path.display(), "serial link open");
                            if let Err(e) =
                                pump_lines(port.as_mut(), &to_write, &mut incoming, &stopped)
                            {
                                tracing::warn!(port = %path.display(), error = %e, "serial link lost");
                            }
                        }
                        Err(e) if !reported => {
                            reported = true;
                            tracing::warn!(port = %path.display(), error = %e, "cannot open the serial port; retrying");
                        }
                        Err(_) => {}
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })?;
        Ok(Self { outgoing, stop })
    }

    /// Pumps a port already open (the simulator's end of a pseudo-terminal pair).
    pub fn spawn(
        mut port: Box<dyn SerialPort>,
        mut incoming: impl FnMut(String) + Send + 'static,
    ) -> io::Result<Self> {
        let (outgoing, to_write) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("serial-device".into())
            .spawn(move || {
                loop {
                    match pump_lines(port.as_mut(), &to_write, &mut incoming, &stopped) {
                        Ok(()) => break,
                        // a pseudo-terminal hangs up (EIO, or a broken pipe) while nobody
                        // holds the other end: the cable is unplugged, not broken
                        Err(e)
                            if e.raw_os_error() == Some(EIO)
                                || e.kind() == io::ErrorKind::BrokenPipe =>
                        {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "serial port closed");
                            break;
                        }
                    }
                }
            })?;
        Ok(Self { outgoing, stop })
    }

    pub fn send(&self, line: String) -> bool {
        self.outgoing.send(line).is_ok()
    }
}

impl Drop for LinePump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A pseudo-terminal pair standing in for a USB cable.
#[cfg(unix)]
pub struct PseudoTerminal {
    device_end: Option<Box<dyn SerialPort>>,
    /// The path of the other end, for the server to open.
    pub path: std::path::PathBuf,
}

#[cfg(unix)]
impl PseudoTerminal {
    pub fn open() -> Result<Self, serialport::Error> {
        let (device_end, server_end) = serialport::TTYPort::pair()?;
        let path = server_end.name().ok_or_else(|| {
            serialport::Error::new(serialport::ErrorKind::NoDevice, "no pty name")
        })?;
        // closed here (it holds an exclusive lock): the server opens it again by path
        drop(server_end);
        Ok(Self {
            device_end: Some(Box::new(device_end)),
            path: std::path::PathBuf::from(path),
        })
    }

    /// The device's end, for the simulator (once).
    pub fn take_device_end(&mut self) -> Option<Box<dyn SerialPort>> {
        self.device_end.take()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn lines_cross_a_pseudo_terminal_pair_both_ways() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let mut line = PseudoTerminal::open().expect("pair");
        let (to_server, from_device) = mpsc::channel();
        let (to_device, from_server) = mpsc::channel();
        let device = LinePump::spawn(line.take_device_end().expect("end"), move |l| {
            let _ = to_device.send(l);
        })
        .expect("device pump");
        let server = LinePump::spawn_reopening(&line.path, move |l| {
            let _ = to_server.send(l);
        })
        .expect("server pump");
        // the server's end opens in the background: knock until the device hears it
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let heard = loop {
            server.send("MOVE r1 2".into());
            match from_server.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(_) if std::time::Instant::now() < deadline => {}
                Err(e) => panic!("the device never heard the server: {e}"),
            }
        };
        assert_eq!(heard, "MOVE r1 2");
        device.send("STATUS 1 idle 5".into());
        assert_eq!(
            from_device.recv_timeout(Duration::from_secs(3)).as_deref(),
            Ok("STATUS 1 idle 5")
        );
    }
}
