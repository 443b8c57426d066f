//! Turning uploaded bytes into pixels, safely: the size is checked from the header before any
//! pixel is decoded, and EXIF orientation is applied so a phone photo stands upright.
//!
//! What decoding may cost is bounded by the header: the pixel limit, a cap on a JPEG's scans
//! (each progressive scan walks every block again), and the `image` crate's allocation limit.
//! A JPEG is decoded straight at the working size (DCT scaling), CMYK ones included.

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

/// More scans than any encoder writes (libjpeg's progressive script has 10; 3 colour
/// components scanned one by one at every step would be under 40): each scan decodes the whole
/// frame's blocks again, so a file of thousands of tiny scans would cost seconds.
pub const MAX_JPEG_SCANS: usize = 64;

impl DecodeLimits {
    /// The most the `image` crate may allocate for one image: 16-bit RGBA at the pixel limit,
    /// plus room for the decoder's own buffers.
    fn max_alloc(self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(16 << 20)
    }
}

/// Checks what the header promises, without decoding a pixel: a format we read, a size within
/// `limits`, and for a JPEG no more than [`MAX_JPEG_SCANS`] scans. Answers the size.
pub fn check_header(bytes: &[u8], limits: DecodeLimits) -> Result<(u32, u32)> {
    if bytes.is_empty() {
        return Err(FaceError::Empty);
    }
    let (width, height) = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => {
            check_jpeg_scans(bytes)?;
            let mut decoder = jpeg_decoder::Decoder::new(bytes);
            decoder
                .read_info()
                .map_err(|e| FaceError::Corrupt(e.to_string()))?;
            let info = decoder
                .info()
                .ok_or_else(|| FaceError::Corrupt("the JPEG has no image header".into()))?;
            (u32::from(info.width), u32::from(info.height))
        }
        Ok(format @ (ImageFormat::Png | ImageFormat::WebP)) => {
            let mut reader = ImageReader::new(Cursor::new(bytes));
            reader.set_format(format);
            reader.into_dimensions().map_err(map_image_error)?
        }
        _ => return Err(FaceError::NotAnImage),
    };
    check_size(width, height, limits)?;
    Ok((width, height))
}

/// Refuses a JPEG with more than [`MAX_JPEG_SCANS`] start-of-scan markers. Inside entropy-coded
/// data every 0xFF byte is followed by 0x00 (or a restart marker), so FF DA is always a marker.
fn check_jpeg_scans(bytes: &[u8]) -> Result<()> {
    let scans = bytes.windows(2).filter(|w| w == &[0xFF, 0xDA]).count();
    if scans > MAX_JPEG_SCANS {
        return Err(FaceError::Corrupt(format!(
            "the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are read"
        )));
    }
    Ok(())
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
        Ok(ImageFormat::Png) => decode_png(bytes, limits),
        Ok(ImageFormat::WebP) => decode_with_image_crate(bytes, ImageFormat::WebP, limits),
        _ => Err(FaceError::NotAnImage),
    }
}

/// PNGs go through the `png` crate itself, which strips 16-bit samples to 8 bits row by row:
/// the `image` crate would first hold the whole picture at 16 bits (8 bytes a pixel in RGBA).
fn decode_png(bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage> {
    let corrupt = |e: png::DecodingError| FaceError::Corrupt(e.to_string());
    let budget = png::Limits {
        bytes: usize::try_from(limits.max_alloc()).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), budget);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height) = reader.info().size();
    check_size(width, height, limits)?;
    let orientation = reader
        .info()
        .exif_metadata
        .as_deref()
        .and_then(Orientation::from_exif_chunk);
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| FaceError::Corrupt("the PNG declares an impossible size".into()))?;
    let mut pixels = vec![0; size];
    let frame = reader.next_frame(&mut pixels).map_err(corrupt)?;
    pixels.truncate(frame.buffer_size());
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(FaceError::Corrupt(
                "the PNG's palette was not expanded".into(),
            ));
        }
    };
    let rgb = match channels {
        3 => pixels,
        1 | 2 => pixels
            .chunks_exact(channels)
            .flat_map(|p| [p[0]; 3])
            .collect(),
        _ => pixels
            .chunks_exact(channels)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
    };
    let image = RgbImage::from_raw(frame.width, frame.height, rgb)
        .ok_or_else(|| FaceError::Corrupt("the PNG's pixels do not fill its size".into()))?;
    let mut image = DynamicImage::ImageRgb8(image);
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image.into_rgb8())
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
/// scale. Ok(None) for a kind it does not decode (12-bit lossless), which then gets a second
/// try with the `image` crate.
fn decode_jpeg(bytes: &[u8], limits: DecodeLimits, max_side: u32) -> Result<Option<RgbImage>> {
    check_jpeg_scans(bytes)?;
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
        // converted here, so that a CMYK JPEG is decoded once, at the working size
        jpeg_decoder::PixelFormat::CMYK32 => {
            RgbImage::from_raw(w, h, pixels.chunks_exact(4).flat_map(cmyk_to_rgb).collect())
        }
        jpeg_decoder::PixelFormat::L16 => return Ok(None),
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

/// One CMYK pixel as jpeg-decoder gives it (the Adobe convention: 255 is no ink) in RGB.
fn cmyk_to_rgb(cmyk: &[u8]) -> [u8; 3] {
    let k = u16::from(cmyk[3]);
    let channel = |c: u8| ((u16::from(c) * k + 127) / 255) as u8;
    [channel(cmyk[0]), channel(cmyk[1]), channel(cmyk[2])]
}

fn decode_with_image_crate(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<RgbImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    let mut allowed = image::Limits::default();
    allowed.max_alloc = Some(limits.max_alloc());
    reader.limits(allowed);
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

    fn cmyk_jpeg(width: u16, height: u16) -> Vec<u8> {
        // Adobe convention: 255 is no ink; this is a mid grey-blue
        let cmyk = [120u8, 160, 200, 230].repeat(usize::from(width) * usize::from(height));
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&cmyk, width, height, jpeg_encoder::ColorType::Cmyk)
            .expect("encode CMYK");
        jpeg
    }

    #[test]
    fn a_cmyk_jpeg_is_decoded_at_the_working_size_in_its_colours() {
        let jpeg = cmyk_jpeg(1600, 1200);
        let decoded = decode_for_size(&jpeg, DecodeLimits::default(), 400).expect("decode");
        assert_eq!(decoded.dimensions(), (400, 300), "scaled by 1/4 in the DCT");
        let [r, g, b] = decoded.get_pixel(200, 150).0;
        let expected = cmyk_to_rgb(&[120, 160, 200, 230]);
        for (got, want) in [r, g, b].into_iter().zip(expected) {
            assert!(got.abs_diff(want) <= 6, "{:?} vs {expected:?}", [r, g, b]);
        }
    }

    #[test]
    fn a_jpeg_of_too_many_scans_is_refused_before_decoding() {
        let image = RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 3, y as u8 * 3, 9]));
        let jpeg = encode(&image, ImageFormat::Jpeg);
        assert!(check_header(&jpeg, DecodeLimits::default()).is_ok());
        // the one scan again and again, before the end marker
        let sos = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .expect("a scan");
        let scan = &jpeg[sos..jpeg.len() - 2];
        let mut many = jpeg[..sos].to_vec();
        for _ in 0..=MAX_JPEG_SCANS {
            many.extend_from_slice(scan);
        }
        many.extend_from_slice(&[0xFF, 0xD9]);
        for result in [
            check_header(&many, DecodeLimits::default()).map(|_| ()),
            decode(&many, DecodeLimits::default()).map(|_| ()),
        ] {
            match result {
                Err(FaceError::Corrupt(message)) => assert!(message.contains("scans"), "{message}"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn pngs_of_every_colour_type_and_depth_decode_to_the_same_rgb() {
        let rgb = RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 77]));
        let expected =
            decode(&encode(&rgb, ImageFormat::Png), DecodeLimits::default()).expect("8-bit RGB");
        assert_eq!(expected, rgb);
        let sixteen = DynamicImage::ImageRgb8(rgb.clone()).into_rgba16();
        let mut png16 = Cursor::new(Vec::new());
        sixteen
            .write_to(&mut png16, ImageFormat::Png)
            .expect("encode");
        let decoded = decode(png16.get_ref(), DecodeLimits::default()).expect("16-bit RGBA");
        assert_eq!(decoded, rgb, "16 bits stripped to 8, alpha dropped");
        let grey = DynamicImage::ImageRgb8(rgb).into_luma8();
        let decoded = decode(&encode_luma(&grey), DecodeLimits::default()).expect("grey");
        assert_eq!(decoded.get_pixel(5, 5).0, [grey.get_pixel(5, 5).0[0]; 3]);
        let png = encode(&RgbImage::new(40, 30), ImageFormat::Png);
        assert!(matches!(
            decode(&png[..png.len() / 2], DecodeLimits::default()),
            Err(FaceError::Corrupt(_))
        ));
    }

    fn encode_luma(image: &image::GrayImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).expect("encode");
        out.into_inner()
    }

    #[test]
    fn the_header_check_reads_sizes_without_decoding() {
        let png = encode(&RgbImage::new(300, 200), ImageFormat::Png);
        assert_eq!(
            check_header(&png, DecodeLimits::default()).expect("size"),
            (300, 200)
        );
        let small = DecodeLimits { max_pixels: 59_999 };
        assert!(matches!(
            check_header(&png, small),
            Err(FaceError::TooLarge { .. })
        ));
        assert!(matches!(
            check_header(b"GIF89a....", small),
            Err(FaceError::NotAnImage)
        ));
    }
}
