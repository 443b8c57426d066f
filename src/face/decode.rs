//! Turning uploaded bytes into pixels, safely: the size is checked from the header before any
//! pixel is decoded, and EXIF orientation is applied so a phone photo stands upright.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use super::{FaceError, Result};

#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest width x height accepted; checked before decoding.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
        }
    }
}

pub fn decode(bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(FaceError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| FaceError::Corrupt(e.to_string()))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => f,
        _ => return Err(FaceError::NotAnImage),
    };
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(FaceError::TooLarge {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    // The decoders are lenient with a cut-off JPEG (they pad it with grey); a JPEG that does not
    // end with its end-of-image marker has lost data, and a login on half a face is worse than
    // a clear error.
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(FaceError::Corrupt("the JPEG ends before its end marker".into()));
    }
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image.into_rgb8())
}

fn map_image_error(error: ImageError) -> FaceError {
    match error {
        ImageError::Unsupported(_) => FaceError::NotAnImage,
        ImageError::Limits(_) => FaceError::Corrupt("the image declares an impossible size".into()),
        other => FaceError::Corrupt(other.to_string()),
    }
}

/// True when the JPEG stream ends with EOI (FF D9), allowing trailing padding bytes.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    #[test]
    fn empty_and_garbage_are_refused_with_their_own_errors() {
        assert!(matches!(decode(&[], DecodeLimits::default()), Err(FaceError::Empty)));
        let text = b"hello, this is not a picture at all";
        assert!(matches!(decode(text, DecodeLimits::default()), Err(FaceError::NotAnImage)));
    }

    #[test]
    fn a_cut_jpeg_is_corrupt_and_a_whole_one_decodes() {
        let image = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let jpeg = encode(&image, ImageFormat::Jpeg);
        let decoded = decode(&jpeg, DecodeLimits::default()).expect("whole JPEG");
        assert_eq!(decoded.dimensions(), (64, 48));
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        assert!(matches!(decode(cut, DecodeLimits::default()), Err(FaceError::Corrupt(_))));
    }

    #[test]
    fn the_pixel_limit_applies_before_decoding() {
        let image = RgbImage::new(200, 100);
        let png = encode(&image, ImageFormat::Png);
        let limits = DecodeLimits { max_pixels: 19_999 };
        match decode(&png, limits) {
            Err(FaceError::TooLarge { width, height, .. }) => assert_eq!((width, height), (200, 100)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
