//! Lift controllers: `device add|list|remove`, and `device-sim`, a simulated one.

use std::fmt::{self, Display};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::Serialize;

use super::{Output, open_store};
use crate::config::Settings;
use crate::device_sim as sim;
use crate::lift::{Device, Link, Secret, valid_device_name};
use crate::store::{DeviceRole, DeviceRow, LinkKind};
use crate::web;

#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    action: DeviceAction,
    #[arg(long, global = true)]
    pub(super) data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum DeviceAction {
    /// Register a device (or give it a new secret) and print its secret, once
    Add {
        name: String,
        /// The server sends commands to the device at this base URL
        #[arg(long, value_name = "URL", group = "link", required = true)]
        push: Option<String>,
        /// The device fetches its commands by long poll (a device behind NAT)
        #[arg(long, group = "link")]
        pull: bool,
        /// The device is on this serial port
        #[arg(long, value_name = "PORT", group = "link")]
        serial: Option<PathBuf>,
        /// A camera board for a kiosk (ESP32-CAM; it long-polls for capture requests)
        #[arg(long, group = "link")]
        camera: bool,
        /// A kiosk tablet: prints the link that pairs it
        #[arg(long, group = "link")]
        kiosk: bool,
        #[command(flatten)]
        output: Output,
    },
    /// The registered devices (without their secrets)
    List {
        #[command(flatten)]
        output: Output,
    },
    Remove {
        name: String,
    },
}

/// A device just registered, with its secret: the one place it is shown.
#[derive(Serialize)]
struct Registered {
    name: String,
    secret: String,
    link: LinkKind,
    address: Option<String>,
    role: DeviceRole,
    /// for a kiosk: the link that pairs the tablet
    #[serde(skip_serializing_if = "Option::is_none")]
    pairing_url: Option<String>,
}

impl Display for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(url) = &self.pairing_url {
            writeln!(f, "Registered the kiosk {}.", self.name)?;
            writeln!(
                f,
                "Open this link once on its tablet (it holds the kiosk's key, shown this once):"
            )?;
            writeln!(f)?;
            writeln!(f, "  {url}")?;
            writeln!(f)?;
            return writeln!(f, "Restart the server to use it.");
        }
        let address = self.address.as_deref().unwrap_or("");
        let what = match self.role {
            DeviceRole::Camera => "a camera board, pull",
            _ => self.link.as_str(),
        };
        writeln!(f, "Registered {} ({what} {address}).", self.name)?;
        writeln!(
            f,
            "Its secret, shown this once; put it in the firmware's config.h:"
        )?;
        writeln!(f)?;
        writeln!(f, "  #define FACELIFT_DEVICE_ID \"{}\"", self.name)?;
        writeln!(f, "  #define FACELIFT_DEVICE_SECRET \"{}\"", self.secret)?;
        writeln!(f)?;
        writeln!(f, "Restart the server to use it.")
    }
}

/// The registered devices, without their secrets.
#[derive(Serialize)]
#[serde(transparent)]
struct Devices(Vec<Listed>);

#[derive(Serialize)]
struct Listed {
    name: String,
    role: DeviceRole,
    link: LinkKind,
    address: Option<String>,
}

impl Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "No device registered; add one with `facelift device add NAME --push URL|--pull|--serial PORT`."
            );
        }
        for d in &self.0 {
            let address = d.address.as_deref().unwrap_or_default();
            writeln!(
                f,
                "{:<20} {:<7} {:<7} {address}",
                d.name,
                d.role.as_str(),
                d.link.as_str()
            )?;
        }
        Ok(())
    }
}

pub fn device(settings: &Settings, args: DeviceArgs) -> Result<()> {
    let store = open_store(settings)?;
    match args.action {
        DeviceAction::Add {
            name,
            push,
            pull,
            serial,
            camera,
            kiosk,
            output,
        } => {
            if !valid_device_name(&name) {
                bail!("a device name is 1 to 64 letters, digits, '-' or '_'");
            }
            let link = match (push, pull, serial) {
                (Some(url), _, _) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        bail!("--push takes the device's base URL, such as http://192.168.1.50");
                    }
                    Link::Push { url }
                }
                (None, true, _) => Link::Pull,
                (None, false, Some(path)) => Link::Serial { path },
                (None, false, None) if camera || kiosk => Link::Pull,
                (None, false, None) => {
                    bail!("choose one of --push URL, --pull, --serial PORT, --camera, --kiosk")
                }
            };
            let device = Device {
                name,
                secret: Secret::generate(),
                link,
            };
            let mut row: DeviceRow = device.to_row();
            row.role = match (camera, kiosk) {
                (true, _) => DeviceRole::Camera,
                (_, true) => DeviceRole::Kiosk,
                _ => DeviceRole::Lift,
            };
            store.put_device(&row)?;
            let pairing_url = kiosk.then(|| {
                let scheme = if settings.tls.self_signed || settings.tls.cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!(
                    "{scheme}://{}/kiosk/{}?key={}",
                    settings.bind, row.name, row.secret
                )
            });
            output.print(&Registered {
                name: row.name,
                secret: row.secret,
                link: row.link,
                address: row.address,
                role: row.role,
                pairing_url,
            })
        }
        DeviceAction::List { output } => {
            let devices = store
                .devices()?
                .into_iter()
                .map(|d| Listed {
                    name: d.name,
                    role: d.role,
                    link: d.link,
                    address: d.address,
                })
                .collect();
            output.print(&Devices(devices))
        }
        DeviceAction::Remove { name } => {
            if !store.remove_device(&name)? {
                bail!("no device named {name}");
            }
            println!("Removed {name}; restart the server.");
            Ok(())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SimMode {
    Push,
    Pull,
    Serial,
    /// A kiosk's camera board: uploads the photos of `--photos DIR` when asked to capture
    Camera,
}

#[derive(Debug, clap::Args)]
pub struct DeviceSimArgs {
    /// The device's registered name
    #[arg(long)]
    name: String,
    /// The device's secret, as `facelift device add` printed it
    #[arg(long, env = "FACELIFT_DEVICE_SECRET", hide_env_values = true)]
    secret: Secret,
    /// The facelift server's base URL (default: the configured `bind`, over https when the
    /// configuration serves TLS)
    #[arg(long)]
    server: Option<String>,
    /// A certificate (PEM) to trust for an https server (default: the server's self-signed one
    /// in <data_dir>/tls/ when the configuration uses it)
    #[arg(long, value_name = "FILE")]
    server_cert: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = SimMode::Push)]
    mode: SimMode,
    /// Push: where the simulator listens for commands
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// Camera: the folder of JPEG photos (or Y4M clips, a burst taken across the clip) it
    /// shows the camera, in turn
    #[arg(long, value_name = "DIR")]
    photos: Option<PathBuf>,
    /// Serial: the port to use (default: make a pseudo-terminal pair and print the server's end)
    #[arg(long, value_name = "PORT")]
    serial: Option<PathBuf>,
    /// default: the configured lowest floor
    #[arg(long, allow_hyphen_values = true)]
    lowest: Option<i32>,
    /// default: the configured highest floor
    #[arg(long, allow_hyphen_values = true)]
    highest: Option<i32>,
    #[arg(long, allow_hyphen_values = true)]
    start_floor: Option<i32>,
    #[arg(long, default_value_t = 1500)]
    travel_ms_per_floor: u64,
    #[arg(long, default_value_t = 5)]
    heartbeat_secs: u64,
    /// Fault: accept commands and never move
    #[arg(long)]
    drop_commands: bool,
    /// Fault: hold every report back this long
    #[arg(long, default_value_t = 0)]
    delay_reports_ms: u64,
    /// Fault: go silent (no reports, no polls) after this many seconds
    #[arg(long)]
    silent_after_secs: Option<u64>,
    /// Fault: stop one floor short and report that floor
    #[arg(long)]
    wrong_floor: bool,
}

/// The server this configuration serves, as a device on this machine reaches it: the `bind`
/// address (loopback for an unspecified one), over https when TLS is configured.
fn configured_server_url(settings: &Settings) -> String {
    let scheme = if settings.tls.self_signed || settings.tls.cert.is_some() {
        "https"
    } else {
        "http"
    };
    let address = match settings.bind.parse::<std::net::SocketAddr>() {
        Ok(address) if address.ip().is_unspecified() => {
            let loopback: std::net::IpAddr = if address.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(loopback, address.port()).to_string()
        }
        _ => settings.bind.clone(),
    };
    format!("{scheme}://{address}")
}

pub fn device_sim(settings: &Settings, args: DeviceSimArgs) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let lowest = args.lowest.unwrap_or(settings.lift.lowest_floor);
        let highest = args.highest.unwrap_or(settings.lift.highest_floor);
        let server = args
            .server
            .clone()
            .unwrap_or_else(|| configured_server_url(settings));
        let certificate_file = args
            .server_cert
            .clone()
            .or_else(|| web::self_signed_certificate(settings));
        let server_certificate = match certificate_file {
            Some(path) if server.starts_with("https://") => {
                Some(std::fs::read(&path).with_context(|| {
                    format!("reading the server's certificate {}", path.display())
                })?)
            }
            _ => None,
        };
        if args.mode == SimMode::Camera {
            let dir = args
                .photos
                .as_deref()
                .context("--mode camera needs --photos DIR: the faces it shows the camera")?;
            let photos = crate::camera_sim::photos_in(dir)
                .with_context(|| format!("reading {}", dir.display()))?;
            let _camera = crate::camera_sim::start(crate::camera_sim::CameraConfig {
                name: args.name.clone(),
                secret: args.secret,
                server: server.trim_end_matches('/').to_string(),
                photos,
                poll_wait_secs: 25,
                server_certificate,
            })?;
            println!(
                "camera {} talking to {server}, showing the photos in {}",
                args.name,
                dir.display()
            );
            tokio::signal::ctrl_c().await?;
            return Ok(());
        }
        let mut pseudo_terminal = None;
        let link = match args.mode {
            SimMode::Push => sim::SimLink::Push {
                listen: args.listen,
            },
            SimMode::Pull | SimMode::Camera => sim::SimLink::Pull,
            SimMode::Serial => match &args.serial {
                Some(path) => sim::SimLink::Serial(crate::lift::serial::open(path)?),
                None => {
                    let mut pair = crate::lift::serial::PseudoTerminal::open()?;
                    let port = pair
                        .take_device_end()
                        .context("the pseudo-terminal has no device end")?;
                    println!("serial line for the server: {}", pair.path.display());
                    println!(
                        "register it with: facelift device add {} --serial {}",
                        args.name,
                        pair.path.display()
                    );
                    pseudo_terminal = Some(pair);
                    sim::SimLink::Serial(port)
                }
            },
        };
        let handle = sim::start(sim::SimConfig {
            device_id: args.name.clone(),
            secret: args.secret,
            server: server.trim_end_matches('/').to_string(),
            link,
            lowest,
            highest,
            start_floor: args.start_floor.unwrap_or(lowest),
            travel_per_floor: std::time::Duration::from_millis(args.travel_ms_per_floor),
            heartbeat: std::time::Duration::from_secs(args.heartbeat_secs.max(1)),
            poll_wait_secs: 25,
            server_certificate,
        })
        .await?;
        let faults = &handle.faults;
        use std::sync::atomic::Ordering::Relaxed;
        faults.drop_commands.store(args.drop_commands, Relaxed);
        faults
            .delay_reports_ms
            .store(args.delay_reports_ms, Relaxed);
        faults.wrong_floor.store(args.wrong_floor, Relaxed);
        match &handle.push_url {
            Some(url) => println!(
                "device {} listening on {url} (floors {lowest} to {highest})",
                args.name
            ),
            None => println!(
                "device {} talking to {server} (floors {lowest} to {highest})",
                args.name
            ),
        }
        if let Some(after) = args.silent_after_secs {
            tokio::time::sleep(std::time::Duration::from_secs(after)).await;
            faults.silent.store(true, Relaxed);
            println!("device {} is now silent", args.name);
        }
        web::shutdown_signal().await;
        drop(handle);
        drop(pseudo_terminal);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulator_finds_the_server_the_configuration_serves() {
        let mut settings = Settings {
            bind: "0.0.0.0:9090".into(),
            ..Settings::default()
        };
        assert_eq!(configured_server_url(&settings), "http://127.0.0.1:9090");
        settings.bind = "192.168.1.20:8443".into();
        settings.tls.self_signed = true;
        assert_eq!(
            configured_server_url(&settings),
            "https://192.168.1.20:8443"
        );
        settings.bind = "[::]:8443".into();
        assert_eq!(configured_server_url(&settings), "https://[::1]:8443");
    }
}
