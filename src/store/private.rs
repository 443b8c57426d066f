//! Files only their owner may read: the database holds device secrets and CSRF tokens.

use std::path::Path;

/// Creates `dir` (and its parents) readable by the owner only. A folder that already exists
/// keeps its mode (it may be shared, such as a temporary folder), with a warning when others
/// may read it.
#[cfg(unix)]
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777),
                "the data folder can be read by others; chmod 700 it");
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `file` empty if it is missing, and makes it (new or not) the owner's only (0600).
#[cfg(unix)]
pub fn create_file(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = file.as_os_str().to_owned();
        companion.push(suffix);
        let companion = Path::new(&companion);
        if companion.exists() {
            std::fs::set_permissions(companion, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(not(unix))]
pub fn create_file(_file: &Path) -> std::io::Result<()> {
    Ok(())
}
