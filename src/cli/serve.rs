//! `facelift serve`: the app the library builds, on the configured address, until Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{gallery_progress_bar, set_path};
use crate::app::{App, Parts};
use crate::config::Settings;
use crate::web;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long)]
    bind: Option<String>,
    #[arg(long)]
    gallery: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate, made once and kept in <data-dir>/tls/
    #[arg(long)]
    tls_self_signed: bool,
}

impl ServeArgs {
    pub(super) fn apply(&self, settings: &mut Settings) {
        if let Some(bind) = &self.bind {
            settings.bind.clone_from(bind);
        }
        set_path(&mut settings.gallery, self.gallery.as_ref());
        set_path(&mut settings.data_dir, self.data_dir.as_ref());
        if self.tls_cert.is_some() {
            settings.tls.cert.clone_from(&self.tls_cert);
        }
        if self.tls_key.is_some() {
            settings.tls.key.clone_from(&self.tls_key);
        }
        settings.tls.self_signed |= self.tls_self_signed;
    }
}

pub fn serve(settings: Settings) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match web::raise_open_file_limit() {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    runtime.block_on(async move {
        let listener =
            web::bind(&settings.bind).with_context(|| format!("binding {}", settings.bind))?;
        let address = listener.local_addr()?;
        let bar = gallery_progress_bar(&settings, false)?;
        let progress = bar.clone();
        let parts = Parts {
            on_photo: Some(Arc::new(move || progress.inc(1))),
            ..Parts::default()
        };
        let app = App::build(settings, parts).await;
        bar.finish_and_clear();
        let app = app?;
        let report = &app.gallery;
        tracing::info!(
            people = report.people,
            photos = report.photos,
            embedded = report.embedded,
            from_cache = report.from_cache,
            "gallery ready"
        );
        let scheme = if app.tls.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{address}");
        app.serve(listener, web::shutdown_signal()).await?;
        Ok(())
    })
}
