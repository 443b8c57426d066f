//! A real `facelift serve` as a child process, for the benches that measure the server from
//! outside (its memory, its connections) the way a second process on loopback sees it.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server; killed when dropped, however the bench ends.
pub struct ChildServer {
    child: Child,
    pub base: String,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl ChildServer {
    /// Starts the server with person01 enrolled (img1, img2) and `env` as extra settings, and
    /// waits until `/healthz` answers.
    pub async fn start(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(env, None).await
    }

    /// As `start`, with the child's soft open-file limit first set to `soft_file_limit`.
    pub async fn start_with(
        env: &[(&str, &str)],
        soft_file_limit: Option<u64>,
    ) -> anyhow::Result<Self> {
        Self::launch(Self::prepare()?, env, soft_file_limit).await
    }

    /// A folder for a server: `gallery/` with person01 (img1, img2); `data/` is made by the
    /// server, or before it by `facelift device add` with `FACELIFT_DATA_DIR` set to it.
    pub fn prepare() -> anyhow::Result<tempfile::TempDir> {
        let shared = Path::new("../shared/data/deepface-faces");
        let dir = tempfile::tempdir()?;
        let folder = dir.path().join("gallery/person01");
        std::fs::create_dir_all(&folder)?;
        for photo in ["img1.jpg", "img2.jpg"] {
            std::fs::copy(shared.join(photo), folder.join(photo))?;
        }
        Ok(dir)
    }

    /// Starts the server in a folder made by `prepare`.
    pub async fn launch(
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        soft_file_limit: Option<u64>,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let binary = env!("CARGO_BIN_EXE_facelift");
        let mut command = match soft_file_limit {
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell.args([
                    "-c",
                    &format!("ulimit -Sn {limit} && exec \"$0\" serve"),
                    binary,
                ]);
                shell
            }
            None => {
                let mut direct = Command::new(binary);
                direct.arg("serve");
                direct
            }
        };
        command
            .env("FACELIFT_BIND", format!("127.0.0.1:{port}"))
            .env("FACELIFT_GALLERY", dir.path().join("gallery"))
            .env("FACELIFT_DATA_DIR", dir.path().join("data"))
            .env("FACELIFT_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let server = Self {
            child: command.spawn()?,
            base: format!("http://127.0.0.1:{port}"),
            port,
            dir,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err()
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory since the last reset, in MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        self.status_kb("VmHWM:").map(|kb| kb / 1024.0)
    }

    pub fn rss_mb(&self) -> Option<f64> {
        self.status_kb("VmRSS:").map(|kb| kb / 1024.0)
    }

    fn status_kb(&self, key: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Resets the peak resident memory ("5": Linux 4.0 and later).
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// The server's data folder (its database).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The server's open-file limit, soft and hard.
    pub fn open_file_limit(&self) -> Option<(String, String)> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut fields = line.split_whitespace().skip(3);
        Some((fields.next()?.to_string(), fields.next()?.to_string()))
    }

    /// The server's open file descriptors.
    pub fn open_fds(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
                .ok()?
                .count(),
        )
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
