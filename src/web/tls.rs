//! HTTPS directly, for a phone on the same Wi-Fi: a certificate and key given by the building,
//! or a self-signed one made once and kept, so a phone that accepted it once keeps trusting it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Extension;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use super::{AppState, ServedOverTls, build_router, spawn_session_cleaner};

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the self-signed certificate and key are kept in `dir`.
pub fn self_signed_files(dir: &Path) -> TlsFiles {
    TlsFiles {
        cert: dir.join("self-signed-cert.pem"),
        key: dir.join("self-signed-key.pem"),
    }
}

/// The self-signed certificate in `dir` (`self_signed_files`), made for `names` (host names and
/// IP addresses) if it is not there yet.
pub fn self_signed(dir: &Path, names: &[String]) -> std::io::Result<TlsFiles> {
    let files = self_signed_files(dir);
    if files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir)?;
    let certified =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(std::io::Error::other)?;
    write_private(&files.key, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, certified.cert.pem())?;
    tracing::info!(cert = %files.cert.display(), ?names, "made a self-signed certificate");
    Ok(files)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Serves HTTPS on `listener` until `shutdown` completes.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    state: AppState,
    files: &TlsFiles,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // ring is the one crypto provider built in; installing it twice is harmless
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = RustlsConfig::from_pem_file(&files.cert, &files.key).await?;
    listener.set_nonblocking(true)?;
    let handle = Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let cleaner = spawn_session_cleaner(&state);
    let app = build_router(state)
        .layer(Extension(ServedOverTls))
        .into_make_service_with_connect_info::<SocketAddr>();
    let result = axum_server::from_tcp_rustls(listener, config)?
        .handle(handle)
        .serve(app)
        .await;
    cleaner.abort();
    result
}
