//! Turning uploaded bytes into pixels, safely: the size is checked from the header before any
//! pixel is decoded, and EXIF orientation is applied so a phone photo stands upright.

use std::io::Cursor;

use image::metadata::Orientation;
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
    decode_for_size(bytes, limits, 0)
}

/// Like [`decode`], for an image that will be shrunk to `max_side` (0: full size): a JPEG at
/// least twice that size is decoded straight at 1/2, 1/4 or 1/8 scale in the DCT domain, which
/// skips most of the decoding and resizing work for a camera frame.
pub fn decode_for_size(bytes: &[u8], limits: DecodeLimits, max_side: u32) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(FaceError::Empty);
    }
    match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => match decode_jpeg(bytes, limits, max_side)? {
            Some(image) => Ok(image),
            None => decode_with_image_crate(bytes, ImageFormat::Jpeg, limits),
        },
        Ok(format @ (ImageFormat::Png | ImageFormat::WebP)) => {
            decode_with_image_crate(bytes, format, limits)
        }
        _ => Err(FaceError::NotAnImage),
    }
}

fn check_size(width: u32, height: u32, limits: DecodeLimits) -> Result<()> {
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(FaceError::TooLarge {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

/// JPEGs go through `jpeg-decoder`, which reports a truncated or corrupt stream as an error
/// (the `image` crate's decoder silently pads it with grey), and which can decode at a DCT
/// scale. Ok(None) for a kind it does not turn into RGB (CMYK, 16-bit).
fn decode_jpeg(bytes: &[u8], limits: DecodeLimits, max_side: u32) -> Result<Option<RgbImage>> {
    let corrupt = |e: jpeg_decoder::Error| FaceError::Corrupt(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(corrupt)?;
    let Some(info) = decoder.info() else {
        return Err(FaceError::Corrupt("the JPEG has no image header".into()));
    };
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_size(width, height, limits)?;
    if max_side > 0 && width.max(height) >= 2 * max_side {
        let factor = max_side as f32 / width.max(height) as f32;
        let wanted =
            |side: u32| u16::try_from((side as f32 * factor).ceil() as u32).unwrap_or(u16::MAX);
        decoder
            .scale(wanted(width), wanted(height))
            .map_err(corrupt)?;
    }
    let pixels = decoder.decode().map_err(corrupt)?;
    let Some(info) = decoder.info() else {
        return Ok(None);
    };
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let image = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(w, h, pixels),
        jpeg_decoder::PixelFormat::L8 => {
            RgbImage::from_raw(w, h, pixels.iter().flat_map(|&l| [l, l, l]).collect())
        }
        _ => return Ok(None),
    };
    let Some(image) = image else {
        return Ok(None);
    };
    let mut image = DynamicImage::ImageRgb8(image);
    if let Some(orientation) = decoder.exif_data().and_then(Orientation::from_exif_chunk) {
        image.apply_orientation(orientation);
    }
    Ok(Some(image.into_rgb8()))
}

fn decode_with_image_crate(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<RgbImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    // This decoder pads a cut-off JPEG with grey instead of failing; a JPEG that does not end
    // with its end-of-image marker has lost data.
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(FaceError::Corrupt(
            "the JPEG ends before its end marker".into(),
        ));
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
        assert!(matches!(
            decode(&[], DecodeLimits::default()),
            Err(FaceError::Empty)
        ));
        let text = b"hello, this is not a picture at all";
        assert!(matches!(
            decode(text, DecodeLimits::default()),
            Err(FaceError::NotAnImage)
        ));
    }

    #[test]
    fn a_cut_jpeg_is_corrupt_and_a_whole_one_decodes() {
        let image = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let jpeg = encode(&image, ImageFormat::Jpeg);
        let decoded = decode(&jpeg, DecodeLimits::default()).expect("whole JPEG");
        assert_eq!(decoded.dimensions(), (64, 48));
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        assert!(matches!(
            decode(cut, DecodeLimits::default()),
            Err(FaceError::Corrupt(_))
        ));
    }

    #[test]
    fn a_large_jpeg_decodes_at_a_dct_scale_close_to_the_wanted_size() {
        let image = RgbImage::from_fn(1280, 720, |x, y| {
            image::Rgb([(x / 5) as u8, (y / 3) as u8, 128])
        });
        let jpeg = encode(&image, ImageFormat::Jpeg);
        let half = decode_for_size(&jpeg, DecodeLimits::default(), 640).expect("decode");
        assert_eq!(half.dimensions(), (640, 360));
        let pixel = half.get_pixel(320, 180);
        let full = image.get_pixel(640, 360);
        for c in 0..3 {
            assert!(pixel[c].abs_diff(full[c]) <= 4, "{pixel:?} vs {full:?}");
        }
        let small = decode_for_size(&jpeg, DecodeLimits::default(), 1000).expect("decode");
        assert_eq!(
            small.dimensions(),
            (1280, 720),
            "less than 2x too big: full decode"
        );
    }

    #[test]
    fn a_jpeg_declaring_50000_squared_pixels_is_refused_from_its_header() {
        let mut jpeg = encode(&RgbImage::new(16, 16), ImageFormat::Jpeg);
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline frame header");
        // SOF0: marker, length (2), precision (1), height (2), width (2)
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xC3, 0x50, 0xC3, 0x50]);
        match decode(&jpeg, DecodeLimits::default()) {
            Err(FaceError::TooLarge { width, height, .. }) => {
                assert_eq!((width, height), (50_000, 50_000))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn the_pixel_limit_applies_before_decoding() {
        let image = RgbImage::new(200, 100);
        let png = encode(&image, ImageFormat::Png);
        let limits = DecodeLimits { max_pixels: 19_999 };
        match decode(&png, limits) {
            Err(FaceError::TooLarge { width, height, .. }) => {
                assert_eq!((width, height), (200, 100))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
