//! `cargo bench --bench pipeline`: the same measurement as `facelift bench --iterations 50`
//! (every stage next to raw ONNX Runtime, in one run) on the default 1280x720 frame. Needs
//! `scripts/setup` first.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = facelift::cli::Cli::parse_from(["facelift", "bench", "--iterations", "50"]);
    facelift::cli::run(cli)
}
