//! Model sets: which files make up a pipeline and how the embedding model wants its input.
//! A new recogniser (VGG-Face, say) is a new manifest, not a change to the pipeline.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FaceError, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub file: String,
    /// Pinned for the models that ship; None for a model the user converts from their own
    /// weights (VGG-Face).
    pub sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// How the aligned face is fitted to the model's input square.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// plain resize (a no-op for 112x112 models)
    Stretch,
    /// aspect-kept resize, then centred zero padding (DeepFace)
    Pad,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedderSpec {
    pub model: ModelFile,
    pub input_size: u32,
    pub layout: Layout,
    pub channels: ChannelOrder,
    /// input value = (pixel - mean) / std
    pub mean: f32,
    pub std: f32,
    pub fit: Fit,
    /// output tensor name; None takes the first output
    pub output: Option<String>,
    pub embedding_size: usize,
    /// cosine similarity at or above which two faces are the same person
    pub threshold: f32,
    /// an int8 model made by `scripts/quantize-vggface`: the report beside it says which
    /// format it is and on which CPU it was checked, and is checked against this one
    #[serde(default)]
    pub int8: bool,
}

/// The model sets facelift knows, by their name in the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelName {
    /// The set that ships (`ModelSet::default_set`).
    #[default]
    Default,
    /// VGG-Face as DeepFace runs it, converted from the user's weights.
    VggFace,
}

/// VGG-Face's output layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VggOutput {
    /// 2622-d, the design's descriptor
    #[default]
    Fc8,
    /// 4096-d, what current DeepFace uses
    Fc7,
}

/// How VGG-Face's weights are stored: as converted, or quantized to int8 by
/// `scripts/quantize-vggface` (which writes the file only when it agrees with fp32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Int8,
}

/// The names above as the command line and the configuration write them.
macro_rules! serde_named {
    ($($kind:ty: $($variant:ident = $name:literal),+;)+) => {$(
        impl std::fmt::Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $(Self::$variant => $name),+ })
            }
        }

        impl std::str::FromStr for $kind {
            type Err = String;

            fn from_str(text: &str) -> std::result::Result<Self, String> {
                match text {
                    $($name => Ok(Self::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}; known: {}",
                        stringify!($kind),
                        [$($name),+].join(", ")
                    )),
                }
            }
        }
    )+};
}

serde_named! {
    ModelName: Default = "default", VggFace = "vgg-face";
    VggOutput: Fc8 = "fc8", Fc7 = "fc7";
    Precision: Fp32 = "fp32", Int8 = "int8";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSet {
    /// Stored with every cached embedding, so two models' vectors never mix.
    pub id: String,
    pub detector: ModelFile,
    pub landmarks: ModelFile,
    pub embedder: EmbedderSpec,
    pub liveness: Option<ModelFile>,
}

impl ModelSet {
    /// The models that ship by default, from `faceplugin-face-recognition-js@0.0.1` (MIT);
    /// `scripts/setup` fetches and prepares them.
    pub fn default_set() -> Self {
        let file = |name: &str| ModelFile {
            file: name.into(),
            sha256: pinned_sha256(name),
        };
        Self {
            id: "faceplugin-0.0.1".into(),
            detector: file("fr_detect.onnx"),
            landmarks: file("fr_landmark.onnx"),
            embedder: EmbedderSpec {
                // denormal weights zeroed by scripts/prepare_models.py (same outputs, 3.5x faster)
                model: file("fr_feature.onnx"),
                input_size: 112,
                layout: Layout::Nchw,
                channels: ChannelOrder::Bgr,
                mean: 127.0,
                std: 128.0,
                fit: Fit::Stretch,
                output: None,
                embedding_size: 512,
                threshold: 0.50,
                int8: false,
            },
            liveness: Some(file("fr_liveness.onnx")),
        }
    }

    /// VGG-Face as DeepFace runs it, converted from the user's weights by
    /// `scripts/convert-vggface`: our detector and alignment, then DeepFace's input (224x224,
    /// NHWC, BGR, /255, aspect-kept resize and centred zero padding). `fc8` is the design's
    /// 2622-d descriptor, `fc7` the 4096-d one current DeepFace uses.
    /// The int8 variant is its own model (own id, own cached templates).
    pub fn vgg_face(output: VggOutput, precision: Precision) -> Self {
        let default = Self::default_set();
        let (name, size) = match output {
            VggOutput::Fc8 => ("fc8", 2622),
            VggOutput::Fc7 => ("fc7", 4096),
        };
        let (id, file) = match precision {
            Precision::Fp32 => (format!("vgg-face-{name}"), "vgg-face.onnx"),
            Precision::Int8 => (format!("vgg-face-int8-{name}"), "vgg-face-int8.onnx"),
        };
        Self {
            id,
            embedder: EmbedderSpec {
                model: ModelFile {
                    file: file.into(),
                    sha256: None,
                },
                input_size: 224,
                layout: Layout::Nhwc,
                channels: ChannelOrder::Bgr,
                mean: 0.0,
                std: 255.0,
                fit: Fit::Pad,
                output: Some(name.into()),
                embedding_size: size,
                // DeepFace's cosine distance threshold for VGG-Face is 0.68
                threshold: 1.0 - 0.68,
                int8: precision == Precision::Int8,
            },
            ..default
        }
    }

    /// The model set the configuration names; `output` and `precision` are VGG-Face's
    /// (fc8 and fp32 unless given), and refused for the default set, which has one of each.
    pub fn by_name(
        name: ModelName,
        output: Option<VggOutput>,
        precision: Option<Precision>,
    ) -> Result<Self> {
        match name {
            ModelName::Default if output.is_some() => Err(FaceError::NotForThisModel {
                model: name,
                option: "an output layer (fc8/fc7)",
            }),
            ModelName::Default if precision.is_some() => Err(FaceError::NotForThisModel {
                model: name,
                option: "a precision (fp32/int8)",
            }),
            ModelName::Default => Ok(Self::default_set()),
            ModelName::VggFace => Ok(Self::vgg_face(
                output.unwrap_or_default(),
                precision.unwrap_or_default(),
            )),
        }
    }
}

/// The sha256 of each shipped model file as facelift uses it, shared with
/// `scripts/prepare_models.py`: `sha256  name` lines, as sha256sum writes them.
const DEFAULT_SET_SHA256: &str = include_str!("../../models/default-set.sha256");

fn pinned_sha256(name: &str) -> Option<String> {
    DEFAULT_SET_SHA256.lines().find_map(|line| {
        let (digest, file) = line.split_once("  ")?;
        (file.trim() == name).then(|| digest.to_string())
    })
}

impl ModelFile {
    /// The file's path under `dir`, after checking that its contents are the expected ones.
    pub fn verified_path(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(&self.file);
        let Some(expected) = &self.sha256 else {
            if !path.is_file() {
                return Err(FaceError::ModelMissing {
                    path,
                    how_to_make: "VGG-Face is converted from your own copy of DeepFace's \
                                  weights by scripts/convert-vggface, and its int8 variant made \
                                  from that by scripts/quantize-vggface",
                });
            }
            return Ok(path);
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(FaceError::ModelMissing {
                    path,
                    how_to_make: "run scripts/setup to fetch the models",
                });
            }
            Err(source) => return Err(FaceError::Io { path, source }),
        };
        let found = hex::encode(Sha256::digest(&bytes));
        if found != *expected {
            return Err(FaceError::ModelChecksum {
                path,
                found,
                expected: expected.clone(),
            });
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shipped file without its sum would be opened unchecked.
    #[test]
    fn every_shipped_model_file_is_pinned() {
        let set = ModelSet::default_set();
        let liveness = set.liveness.clone().expect("the default set has liveness");
        for file in [
            &set.detector,
            &set.landmarks,
            &set.embedder.model,
            &liveness,
        ] {
            let sha256 = file.sha256.as_deref().unwrap_or_default();
            assert_eq!(sha256.len(), 64, "{} is not pinned", file.file);
        }
    }

    #[test]
    fn int8_vgg_face_is_its_own_model_and_says_how_to_make_it() {
        let fp32 = ModelSet::by_name(ModelName::VggFace, None, None).expect("fp32");
        let int8 = ModelSet::by_name(
            ModelName::VggFace,
            Some(VggOutput::Fc7),
            Some(Precision::Int8),
        )
        .expect("int8");
        assert_eq!(fp32.id, "vgg-face-fc8");
        assert_eq!(int8.id, "vgg-face-int8-fc7");
        assert_eq!(int8.embedder.model.file, "vgg-face-int8.onnx");
        assert_eq!(int8.embedder.embedding_size, 4096);

        let empty = tempfile::tempdir().expect("tempdir");
        let missing = int8.embedder.model.verified_path(empty.path());
        assert!(
            matches!(&missing, Err(e @ FaceError::ModelMissing { .. })
                if e.to_string().contains("scripts/quantize-vggface")),
            "{missing:?}"
        );
        let refused = ModelSet::by_name(ModelName::Default, None, Some(Precision::Int8));
        assert!(
            matches!(&refused, Err(FaceError::NotForThisModel { .. })),
            "{refused:?}"
        );
        assert_eq!(
            "fp16".parse::<Precision>(),
            Err("unknown Precision \"fp16\"; known: fp32, int8".into())
        );
        assert_eq!("vgg-face".parse::<ModelName>(), Ok(ModelName::VggFace));
        assert_eq!(ModelName::VggFace.to_string(), "vgg-face");
    }
}
