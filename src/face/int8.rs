//! Int8 models and the CPU they run on. ONNX Runtime picks its int8 kernels from the CPU at run
//! time, and they do not all compute the same thing: on x86 without VNNI, its u8s8 kernels
//! (uint8 activations, int8 weights) add pairs of products in int16 with VPMADDUBSW, which
//! saturates; with AVX512-VNNI or AVX-VNNI the products are summed in int32 and nothing
//! saturates. u8u8 widens to int16 before multiplying and is exact on every CPU, but on a VNNI
//! CPU it runs slower than fp32. So `scripts/quantize-vggface` picks the format from the CPU
//! (`facelift cpu`), checks agreement with fp32 on that CPU, and records both in the model's
//! report; the engine refuses a model whose checked results this CPU would not reproduce.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{FaceError, Result};

/// How an int8 model's activations and weights are stored (ONNX Runtime's QDQ types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Int8Format {
    /// uint8 activations, int8 weights: fastest where VNNI is, saturates where it is not
    U8s8,
    /// the same with 7-bit weights, which saturate less but lose precision
    U8s8ReduceRange,
    /// uint8 activations and weights: exact everywhere
    U8u8,
}

/// Shown by the name the reports and `facelift cpu --json` use (serde's).
fn write_serde_name(value: &impl Serialize, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => f.write_str(&name),
        _ => Err(std::fmt::Error),
    }
}

impl std::fmt::Display for Int8Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_serde_name(self, f)
    }
}

impl std::fmt::Display for Int8Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_serde_name(self, f)
    }
}

impl Int8Format {
    /// Whether the format's products can saturate on some CPUs (so a check made on a CPU
    /// that does not saturate says nothing about one that does).
    pub fn saturates_without_vnni(self) -> bool {
        matches!(self, Self::U8s8 | Self::U8s8ReduceRange)
    }
}

/// Which int8 kernels ONNX Runtime uses here, as far as results go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Int8Kernels {
    /// x86 with AVX512-VNNI or AVX-VNNI: int32 sums, nothing saturates
    Vnni,
    /// x86 without VNNI: u8s8 products saturate in int16
    SaturatingU8s8,
    /// no such issue (ONNX Runtime's documentation: ARM, x86 with VNNI)
    Exact,
}

/// The CPU features that decide ONNX Runtime's int8 kernels, read with CPUID as ONNX Runtime
/// reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuFeatures {
    pub x86_64: bool,
    pub avx2: bool,
    pub avx512bw: bool,
    pub avx512vnni: bool,
    pub avxvnni: bool,
}

impl CpuFeatures {
    /// An Intel Xeon with AVX512-VNNI, as some machines of this project's kind have.
    pub const XEON_VNNI: Self = Self {
        x86_64: true,
        avx2: true,
        avx512bw: true,
        avx512vnni: true,
        avxvnni: true,
    };

    /// An AMD EPYC (Rome) with AVX2 and no AVX-512 or VNNI, as the others have.
    pub const EPYC_AVX2: Self = Self {
        x86_64: true,
        avx2: true,
        avx512bw: false,
        avx512vnni: false,
        avxvnni: false,
    };

    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                x86_64: true,
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                avx512bw: std::arch::is_x86_feature_detected!("avx512bw"),
                avx512vnni: std::arch::is_x86_feature_detected!("avx512vnni"),
                avxvnni: std::arch::is_x86_feature_detected!("avxvnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::default()
    }

    /// The features present, by the names `/proc/cpuinfo` uses.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.avx2, "avx2"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vnni, "avx512_vnni"),
            (self.avxvnni, "avx_vnni"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }

    pub fn int8_kernels(&self) -> Int8Kernels {
        match (self.x86_64, self.avx512vnni || self.avxvnni) {
            (true, true) => Int8Kernels::Vnni,
            // without VNNI, ONNX Runtime's SSE, AVX2 and AVX-512 u8s8 kernels alike are
            // treated as saturating: a check made elsewhere is not taken on trust here
            (true, false) => Int8Kernels::SaturatingU8s8,
            (false, _) => Int8Kernels::Exact,
        }
    }

    /// The int8 format that both runs fast and stays exact with this CPU's kernels: u8s8 where
    /// nothing saturates, u8u8 where u8s8 would.
    pub fn recommended_int8_format(&self) -> Int8Format {
        match self.int8_kernels() {
            Int8Kernels::Vnni | Int8Kernels::Exact => Int8Format::U8s8,
            Int8Kernels::SaturatingU8s8 => Int8Format::U8u8,
        }
    }
}

/// Where and how an int8 model's agreement with fp32 was checked (part of the report
/// `scripts/quantize-vggface` writes beside it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidatedOn {
    /// the CPU's model name, for people
    #[serde(default)]
    pub cpu: String,
    #[serde(default)]
    pub features: Vec<String>,
    pub int8_kernels: Int8Kernels,
}

/// The part of an int8 model's report the engine reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int8Report {
    /// absent in reports of the first quantizer, which always made u8s8
    #[serde(default = "first_quantizers_format")]
    pub int8_format: Int8Format,
    /// absent in reports of the first quantizer
    pub validated_on: Option<ValidatedOn>,
}

fn first_quantizers_format() -> Int8Format {
    Int8Format::U8s8
}

impl Int8Report {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            FaceError::Int8(format!(
                "cannot read the int8 model's report {}: {e}; it is written beside the model by \
                 scripts/quantize-vggface, which checks the model's agreement with fp32: run it \
                 again on this machine",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            FaceError::Int8(format!(
                "the int8 model's report {} does not parse ({e}): run scripts/quantize-vggface \
                 again on this machine",
                path.display()
            ))
        })
    }

    /// Whether this CPU computes what the check computed. A format that cannot saturate does
    /// everywhere; one that can does only on the kind of kernels it was checked with, or on
    /// kernels that do not saturate at all.
    pub fn check_cpu(&self, cpu: &CpuFeatures) -> std::result::Result<(), String> {
        let here = cpu.int8_kernels();
        if !self.int8_format.saturates_without_vnni() || here != Int8Kernels::SaturatingU8s8 {
            return Ok(());
        }
        let checked_with = self.validated_on.as_ref().map(|v| v.int8_kernels);
        if checked_with == Some(Int8Kernels::SaturatingU8s8) {
            return Ok(());
        }
        let checked_on = self.validated_on.as_ref().map_or_else(
            || "a CPU the report does not name (made by an older quantizer)".to_string(),
            |v| format!("{} ({})", v.cpu, v.features.join(" ")),
        );
        Err(format!(
            "this int8 model ({}) was checked against fp32 on {checked_on}, whose int8 \
             kernels do not saturate; this CPU has no VNNI (features: {}), and ONNX Runtime's \
             u8s8 kernels saturate on it, so the model would not compute what was checked \
             (measured on such a CPU: agreement 0.9966, under the 0.999 bar). Run \
             scripts/quantize-vggface on this machine (it picks u8u8 here), or use precision fp32",
            self.int8_format,
            match cpu.names() {
                names if names.is_empty() => "none of avx2 avx512bw avx512_vnni avx_vnni".into(),
                names => names.join(" "),
            },
        ))
    }
}

/// The report beside an int8 model file (`vgg-face-int8.onnx` -> `vgg-face-int8.json`), read
/// and checked against this CPU.
pub fn check_int8_model(model: &Path, cpu: &CpuFeatures) -> Result<Int8Report> {
    let report = Int8Report::read(&model.with_extension("json"))?;
    report.check_cpu(cpu).map_err(FaceError::Int8)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intel_vnni() -> CpuFeatures {
        CpuFeatures::XEON_VNNI
    }

    fn amd_avx2() -> CpuFeatures {
        CpuFeatures::EPYC_AVX2
    }

    fn report(format: Int8Format, kernels: Option<Int8Kernels>) -> Int8Report {
        Int8Report {
            int8_format: format,
            validated_on: kernels.map(|int8_kernels| ValidatedOn {
                cpu: "test CPU".into(),
                features: vec![],
                int8_kernels,
            }),
        }
    }

    #[test]
    fn the_format_is_chosen_from_the_cpus_int8_kernels() {
        assert_eq!(intel_vnni().int8_kernels(), Int8Kernels::Vnni);
        assert_eq!(intel_vnni().recommended_int8_format(), Int8Format::U8s8);
        assert_eq!(amd_avx2().int8_kernels(), Int8Kernels::SaturatingU8s8);
        assert_eq!(amd_avx2().recommended_int8_format(), Int8Format::U8u8);
        let avx_vnni_only = CpuFeatures {
            avx512bw: false,
            avx512vnni: false,
            ..intel_vnni()
        };
        assert_eq!(avx_vnni_only.recommended_int8_format(), Int8Format::U8s8);
        let avx512_without_vnni = CpuFeatures {
            avx512vnni: false,
            avxvnni: false,
            ..intel_vnni()
        };
        assert_eq!(
            avx512_without_vnni.recommended_int8_format(),
            Int8Format::U8u8,
            "AVX-512BW's u8s8 kernel saturates too"
        );
        assert_eq!(
            CpuFeatures::default().recommended_int8_format(),
            Int8Format::U8s8,
            "not x86: no saturation"
        );
        assert_eq!(amd_avx2().names(), ["avx2"]);
        assert_eq!(Int8Format::U8s8ReduceRange.to_string(), "u8s8-reduce-range");
        assert_eq!(Int8Kernels::SaturatingU8s8.to_string(), "saturating-u8s8");
    }

    #[test]
    fn a_u8s8_model_checked_with_vnni_is_refused_where_u8s8_saturates() {
        let vnni_checked = report(Int8Format::U8s8, Some(Int8Kernels::Vnni));
        assert_eq!(vnni_checked.check_cpu(&intel_vnni()), Ok(()));
        let refused = vnni_checked.check_cpu(&amd_avx2()).expect_err("refused");
        assert!(refused.contains("scripts/quantize-vggface"), "{refused}");
        assert!(refused.contains("features: avx2"), "{refused}");
        // the first quantizer's reports name no CPU: its u8s8 models are refused the same way
        let unknown = report(Int8Format::U8s8, None);
        assert!(unknown.check_cpu(&amd_avx2()).is_err());
        assert_eq!(unknown.check_cpu(&intel_vnni()), Ok(()));
        assert!(
            report(Int8Format::U8s8ReduceRange, Some(Int8Kernels::Vnni))
                .check_cpu(&amd_avx2())
                .is_err()
        );
    }

    #[test]
    fn a_model_checked_where_it_saturates_or_that_cannot_saturate_runs_anywhere() {
        for cpu in [intel_vnni(), amd_avx2(), CpuFeatures::default()] {
            for kernels in [Int8Kernels::Vnni, Int8Kernels::SaturatingU8s8] {
                assert_eq!(
                    report(Int8Format::U8u8, Some(kernels)).check_cpu(&cpu),
                    Ok(())
                );
            }
            // checked with saturation (forced with --format u8s8): elsewhere nothing
            // saturates, which only removes the error that was checked
            assert_eq!(
                report(Int8Format::U8s8, Some(Int8Kernels::SaturatingU8s8)).check_cpu(&cpu),
                Ok(())
            );
        }
    }

    #[test]
    fn reports_of_both_quantizers_parse() {
        let first: Int8Report = serde_json::from_str(
            r#"{"made_from": "vgg-face.onnx", "format": "QDQ, uint8 activations, int8 per-channel weights"}"#,
        )
        .expect("first quantizer's report");
        assert_eq!(first, report(Int8Format::U8s8, None));
        let now: Int8Report = serde_json::from_str(
            r#"{"int8_format": "u8u8", "validated_on": {"cpu": "AMD EPYC 7B12", "features": ["avx2"], "int8_kernels": "saturating-u8s8"}}"#,
        )
        .expect("report");
        assert_eq!(now.int8_format, Int8Format::U8u8);
        assert_eq!(
            now.validated_on.map(|v| v.int8_kernels),
            Some(Int8Kernels::SaturatingU8s8)
        );
    }
}
