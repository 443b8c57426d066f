//! `facelift cpu`: what this CPU means for int8 models.

use std::fmt::{self, Display};

use anyhow::Result;
use serde::Serialize;

use super::Output;
use crate::face::int8::{CpuFeatures, Int8Format, Int8Kernels};

#[derive(Debug, clap::Args)]
pub struct CpuArgs {
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct CpuReport {
    cpu: String,
    features: Vec<&'static str>,
    int8_kernels: Int8Kernels,
    int8_format: Int8Format,
}

pub fn cpu(args: CpuArgs) -> Result<()> {
    let features = CpuFeatures::detect();
    let model_name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    args.output.print(&CpuReport {
        cpu: model_name,
        features: features.names(),
        int8_kernels: features.int8_kernels(),
        int8_format: features.recommended_int8_format(),
    })
}

impl Display for CpuReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CPU            {}", self.cpu)?;
        writeln!(f, "int8 features  {}", self.features.join(" "))?;
        writeln!(f, "int8 kernels   {}", self.int8_kernels)?;
        writeln!(
            f,
            "int8 format    {} (what scripts/quantize-vggface makes here)",
            self.int8_format
        )
    }
}
