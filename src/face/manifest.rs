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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VggOutput {
    Fc8,
    Fc7,
}

/// How VGG-Face's weights are stored: as converted, or quantized to int8 by
/// `scripts/quantize-vggface` (which writes the file only when it agrees with fp32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Int8,
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
        let file = |name: &str, sha256: &str| ModelFile {
            file: name.into(),
            sha256: Some(sha256.into()),
        };
        Self {
            id: "faceplugin-0.0.1".into(),
            detector: file(
                "fr_detect.onnx",
                "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
            ),
            landmarks: file(
                "fr_landmark.onnx",
                "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
            ),
            embedder: EmbedderSpec {
                // denormal weights zeroed by scripts/prepare_models.py (same outputs, 3.5x faster)
                model: file(
                    "fr_feature.onnx",
                    "ef40c4854a3c4fc43ea2d77a60f7d89fe6aa324f7840a7f74351beb60d94ec0b",
                ),
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
            liveness: Some(file(
                "fr_liveness.onnx",
                "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
            )),
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

    /// Looks a model set up by the name used in the configuration; `output` picks VGG-Face's
    /// layer ("fc8", the default, or "fc7") and `precision` its weights ("fp32", the default,
    /// or "int8").
    pub fn by_name(name: &str, output: Option<&str>, precision: Option<&str>) -> Result<Self> {
        let vgg_precision = match precision {
            None | Some("fp32") => Precision::Fp32,
            Some("int8") => Precision::Int8,
            Some(other) => {
                return Err(FaceError::Model(format!(
                    "unknown model precision {other:?}; VGG-Face has fp32 and int8"
                )));
            }
        };
        let vgg_output = match output {
            None | Some("fc8") => VggOutput::Fc8,
            Some("fc7") => VggOutput::Fc7,
            Some(other) => {
                return Err(FaceError::Model(format!(
                    "unknown model output {other:?}; VGG-Face has fc8 and fc7"
                )));
            }
        };
        match (name, output, precision) {
            ("default", None, None) => Ok(Self::default_set()),
            ("default", Some(_), _) => Err(FaceError::Model(
                "the default model has one output; fc8/fc7 are VGG-Face's".into(),
            )),
            ("default", _, Some(_)) => Err(FaceError::Model(
                "the default model comes in one precision; fp32/int8 are VGG-Face's".into(),
            )),
            ("vgg-face", _, _) => Ok(Self::vgg_face(vgg_output, vgg_precision)),
            (other, _, _) => Err(FaceError::Model(format!(
                "unknown model set {other:?}; known: default, vgg-face"
            ))),
        }
    }
}

impl ModelFile {
    /// The file's path under `dir`, after checking that its contents are the expected ones.
    pub fn verified_path(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(&self.file);
        let Some(expected) = &self.sha256 else {
            if !path.is_file() {
                return Err(FaceError::Model(format!(
                    "{} is missing; VGG-Face is converted from your own copy of DeepFace's \
                     weights by scripts/convert-vggface, and its int8 variant made from that \
                     by scripts/quantize-vggface",
                    path.display()
                )));
            }
            return Ok(path);
        };
        let bytes = std::fs::read(&path).map_err(|e| {
            FaceError::Model(format!(
                "cannot read {}: {e}; run scripts/setup to fetch the models",
                path.display()
            ))
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != *expected {
            return Err(FaceError::Model(format!(
                "{} has sha256 {digest}, expected {expected}; run scripts/setup to fetch it again",
                path.display(),
            )));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_vgg_face_is_its_own_model_and_says_how_to_make_it() {
        let fp32 = ModelSet::by_name("vgg-face", None, None).expect("fp32");
        let int8 = ModelSet::by_name("vgg-face", Some("fc7"), Some("int8")).expect("int8");
        assert_eq!(fp32.id, "vgg-face-fc8");
        assert_eq!(int8.id, "vgg-face-int8-fc7");
        assert_eq!(int8.embedder.model.file, "vgg-face-int8.onnx");
        assert_eq!(int8.embedder.embedding_size, 4096);

        let empty = tempfile::tempdir().expect("tempdir");
        let missing = int8.embedder.model.verified_path(empty.path());
        assert!(
            matches!(&missing, Err(FaceError::Model(m)) if m.contains("scripts/quantize-vggface")),
            "{missing:?}"
        );
        for (name, precision) in [("default", "int8"), ("vgg-face", "fp16")] {
            let refused = ModelSet::by_name(name, None, Some(precision));
            assert!(
                matches!(&refused, Err(FaceError::Model(m)) if m.contains("fp32")),
                "{name} {precision}: {refused:?}"
            );
        }
    }
}
