//! A simulated camera board (the ESP32-CAM of a kiosk), speaking the protocol as the camera
//! firmware does: it long-polls for a capture request, checks the signed answer, "captures"
//! the next shot of its folder, and uploads it signed. A shot is a photo (a burst repeats it,
//! as a photo held to a real camera would) or a Y4M clip (a burst takes its frames spread over
//! the clip, as a person moving in front of the camera; one frame is the clip's middle one).
//! A device, so outside `kiosk`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::device_sim::{sign_as, signed_poll};
use crate::kiosk::{CaptureRequest, join_burst};
use crate::lift::protocol::{Secret, Verifier};

pub struct CameraConfig {
    pub name: String,
    pub secret: Secret,
    /// The facelift server's base URL.
    pub server: String,
    /// The photos it shows the camera, in turn.
    pub photos: Vec<PathBuf>,
    pub poll_wait_secs: u64,
    pub server_certificate: Option<Vec<u8>>,
}

/// The running camera; dropping it stops it.
pub struct CameraHandle {
    /// Uploads made.
    pub uploads: Arc<AtomicU64>,
    /// The server's answer to the last upload (the result as the kiosk shows it).
    pub last_result: Arc<Mutex<Option<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CameraHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The JPEG photos and Y4M clips of a folder, by name.
pub fn photos_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                ["jpg", "jpeg", "y4m"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x))
            })
        })
        .collect();
    photos.sort();
    Ok(photos)
}

pub fn start(config: CameraConfig) -> Result<CameraHandle, std::io::Error> {
    if config.photos.is_empty() {
        return Err(std::io::Error::other("the camera has no photos to show"));
    }
    let mut http =
        reqwest::Client::builder().timeout(Duration::from_secs(config.poll_wait_secs + 10));
    if let Some(pem) = &config.server_certificate {
        let certificate = reqwest::Certificate::from_pem(pem).map_err(std::io::Error::other)?;
        http = http.add_root_certificate(certificate);
    }
    let http = http.build().map_err(std::io::Error::other)?;
    let uploads = Arc::new(AtomicU64::new(0));
    let last_result = Arc::new(Mutex::new(None));
    let task = tokio::spawn(run(
        config,
        http,
        Arc::clone(&uploads),
        Arc::clone(&last_result),
    ));
    Ok(CameraHandle {
        uploads,
        last_result,
        task,
    })
}

async fn run(
    config: CameraConfig,
    http: reqwest::Client,
    uploads: Arc<AtomicU64>,
    last_result: Arc<Mutex<Option<serde_json::Value>>>,
) {
    let verifier = Verifier::new(30);
    let path = format!("/api/v1/device/capture?wait={}", config.poll_wait_secs);
    let mut next_photo = 0;
    loop {
        let Some(capture) = signed_poll::<CaptureRequest>(
            &http,
            &config.server,
            &config.name,
            &config.secret,
            &verifier,
            &path,
        )
        .await
        else {
            continue;
        };
        let photo = &config.photos[next_photo % config.photos.len()];
        next_photo += 1;
        let frames = match shot_frames(photo, capture.frames) {
            Ok(frames) => frames,
            Err(error) => {
                tracing::warn!(photo = %photo.display(), %error, "cannot read the shot");
                continue;
            }
        };
        let (body, content_type) = match <[Vec<u8>; 1]>::try_from(frames) {
            Ok([jpeg]) => (jpeg, "image/jpeg"),
            Err(frames) => (join_burst(&frames), "application/x-facelift-burst"),
        };
        let upload = format!("/api/v1/device/frames?attempt={}", capture.attempt_id);
        let (request, _) = sign_as(
            http.post(format!("{}{upload}", config.server)),
            &config.name,
            &config.secret,
            "POST",
            &upload,
            &body,
        );
        let result = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await;
        uploads.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(response) => {
                let result = response.json::<serde_json::Value>().await.ok();
                tracing::info!(photo = %photo.display(), ?result, "uploaded");
                *last_result
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = result;
            }
            Err(error) => tracing::warn!(%error, "upload failed"),
        }
    }
}

/// `count` JPEG frames of a shot: a photo repeated, or frames spread over a Y4M clip.
pub fn shot_frames(path: &Path, count: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path)?;
    let count = count.max(1);
    let is_clip = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
    if !is_clip {
        return Ok(vec![bytes; count]);
    }
    let clip = y4m::Clip::parse(&bytes).map_err(std::io::Error::other)?;
    let picked: Vec<usize> = if count == 1 {
        vec![clip.frames / 2]
    } else {
        (0..count).map(|i| i * clip.frames / count).collect()
    };
    picked.into_iter().map(|index| clip.jpeg(index)).collect()
}

/// Y4M clips, as Chromium's fake camera plays them: 4:2:0, 8-bit, full-range BT.601.
mod y4m {
    pub struct Clip<'a> {
        width: usize,
        height: usize,
        /// each frame's planes: Y, then Cb and Cr at half size
        planes: Vec<&'a [u8]>,
        pub frames: usize,
    }

    impl<'a> Clip<'a> {
        pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
            let header_end = bytes
                .iter()
                .position(|&b| b == b'\n')
                .ok_or("not a Y4M file: no header line")?;
            let header = std::str::from_utf8(&bytes[..header_end]).map_err(|e| e.to_string())?;
            let mut words = header.split(' ');
            if words.next() != Some("YUV4MPEG2") {
                return Err("not a Y4M file".into());
            }
            let (mut width, mut height) = (0, 0);
            for word in words {
                match word.split_at_checked(1) {
                    Some(("W", n)) => width = n.parse().map_err(|_| "a bad width")?,
                    Some(("H", n)) => height = n.parse().map_err(|_| "a bad height")?,
                    Some(("C", colour)) if !colour.starts_with("420") => {
                        return Err(format!("only 4:2:0 clips are read, not C{colour}"));
                    }
                    _ => {}
                }
            }
            if width == 0
                || height == 0
                || width > 4096
                || height > 4096
                || width % 2 == 1
                || height % 2 == 1
            {
                return Err(format!("a clip of {width}x{height} is not read"));
            }
            let frame_size = width * height * 3 / 2;
            let mut planes = Vec::new();
            let mut at = header_end + 1;
            while at < bytes.len() {
                let line_end = bytes[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or("a frame without its header")?;
                if !bytes[at..].starts_with(b"FRAME") {
                    return Err("a frame header that is not FRAME".into());
                }
                let start = at + line_end + 1;
                let planes_of_frame = bytes
                    .get(start..start + frame_size)
                    .ok_or("the clip ends within a frame")?;
                planes.push(planes_of_frame);
                at = start + frame_size;
            }
            if planes.is_empty() {
                return Err("a clip without frames".into());
            }
            Ok(Self {
                width,
                height,
                frames: planes.len(),
                planes,
            })
        }

        pub fn jpeg(&self, index: usize) -> std::io::Result<Vec<u8>> {
            let frame = self.planes[index.min(self.frames - 1)];
            let (w, h) = (self.width, self.height);
            let (luma, chroma) = frame.split_at(w * h);
            let (cb, cr) = chroma.split_at(w * h / 4);
            let mut rgb = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    let c = (y / 2) * (w / 2) + x / 2;
                    let luma = f32::from(luma[y * w + x]);
                    let (u, v) = (f32::from(cb[c]) - 128.0, f32::from(cr[c]) - 128.0);
                    for value in [
                        luma + 1.402 * v,
                        luma - 0.344_136 * u - 0.714_136 * v,
                        luma + 1.772 * u,
                    ] {
                        rgb.push(value.round().clamp(0.0, 255.0) as u8);
                    }
                }
            }
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
                .encode(&rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
                .map_err(std::io::Error::other)?;
            Ok(jpeg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16x8 clip of three frames, dark to light.
    fn clip() -> Vec<u8> {
        let mut bytes = b"YUV4MPEG2 W16 H8 F10:1 Ip A1:1 C420jpeg\n".to_vec();
        for level in [20u8, 128, 230] {
            bytes.extend_from_slice(b"FRAME\n");
            bytes.extend(std::iter::repeat_n(level, 16 * 8));
            bytes.extend(std::iter::repeat_n(128, 2 * 8 * 4));
        }
        bytes
    }

    fn brightness(jpeg: &[u8]) -> u8 {
        image::load_from_memory(jpeg)
            .expect("a JPEG")
            .to_luma8()
            .get_pixel(8, 4)
            .0[0]
    }

    #[test]
    fn a_clip_gives_its_frames_spread_as_jpegs_and_a_photo_repeats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("turning.y4m");
        std::fs::write(&path, clip()).expect("write");
        let burst = shot_frames(&path, 3).expect("frames");
        let levels: Vec<u8> = burst.iter().map(|j| brightness(j)).collect();
        assert!(
            levels[0] < 40 && (110..150).contains(&levels[1]) && levels[2] > 210,
            "{levels:?}"
        );
        let single = shot_frames(&path, 1).expect("one frame");
        assert_eq!(single.len(), 1);
        assert!(
            (110..150).contains(&brightness(&single[0])),
            "the middle frame"
        );

        let photo = dir.path().join("face.jpg");
        std::fs::write(&photo, &burst[0]).expect("write");
        assert_eq!(
            shot_frames(&photo, 4).expect("photo"),
            vec![burst[0].clone(); 4]
        );
        let mut cut = clip();
        cut.truncate(cut.len() - 10);
        std::fs::write(&path, cut).expect("write");
        assert!(shot_frames(&path, 2).is_err(), "a clip cut within a frame");
        std::fs::write(&path, b"YUV4MPEG2 W16 H8 C444\nFRAME\n").expect("write");
        assert!(shot_frames(&path, 2).is_err(), "4:4:4 is not read");
    }
}
