//! HTTPS directly, for a phone on the same Wi-Fi: a certificate and key given by the building,
//! or a self-signed one made once and kept, so a phone that accepted it once keeps trusting it.

use std::path::{Path, PathBuf};

use crate::config::Settings;

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

/// Where under `data_dir` the self-signed certificate is kept.
pub const SELF_SIGNED_DIR: &str = "tls";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("a TLS certificate and its key go together: give both tls.cert and tls.key")]
    HalfPair,
    #[error("making the self-signed certificate in {}: {source}", .dir.display())]
    SelfSigned {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The certificate to serve HTTPS with, if the settings ask for HTTPS: the building's, or the
/// self-signed one (made on first use for localhost, the bind address and `tls.names`).
pub fn tls_files(settings: &Settings) -> Result<Option<TlsFiles>, TlsError> {
    let tls = &settings.tls;
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })),
        (Some(_), None) | (None, Some(_)) => Err(TlsError::HalfPair),
        (None, None) if tls.self_signed => {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            if let Ok(address) = settings.bind.parse::<std::net::SocketAddr>()
                && !address.ip().is_unspecified()
            {
                names.push(address.ip().to_string());
            }
            names.extend(tls.names.iter().cloned());
            names.dedup();
            let dir = settings.data_dir.join(SELF_SIGNED_DIR);
            self_signed(&dir, &names)
                .map(Some)
                .map_err(|source| TlsError::SelfSigned { dir, source })
        }
        (None, None) => Ok(None),
    }
}

/// The self-signed certificate the settings serve, if they serve one: what a device on this
/// machine should trust.
pub fn self_signed_certificate(settings: &Settings) -> Option<PathBuf> {
    (settings.tls.self_signed && settings.tls.cert.is_none())
        .then(|| self_signed_files(&settings.data_dir.join(SELF_SIGNED_DIR)).cert)
}
