//! Images built to cost a decoder the most for the fewest bytes: the uploads that issue 14
//! found answered after seconds or with hundreds of megabytes. Shared by the tests and the
//! `hostile` bench.

#![allow(dead_code)]

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};

/// A CMYK JPEG of one 8x8 block whose frame header then claims `side` x `side`: decoders fill
/// the missing blocks and decode the whole declared size from about 400 bytes.
pub fn cmyk_jpeg_claiming(side: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    let cmyk = [40u8, 80, 120, 10].repeat(8 * 8);
    jpeg_encoder::Encoder::new(&mut jpeg, 80)
        .encode(&cmyk, 8, 8, jpeg_encoder::ColorType::Cmyk)
        .expect("encode a CMYK JPEG");
    claim_jpeg_size(&mut jpeg, side, side);
    jpeg
}

/// A progressive JPEG of `side` x `side` (a real one, of a smooth picture).
pub fn progressive_jpeg(side: u16) -> Vec<u8> {
    let pixels: Vec<u8> = (0..u32::from(side) * u32::from(side))
        .flat_map(|i| {
            let (x, y) = (i % u32::from(side), i / u32::from(side));
            [(x % 256) as u8, (y % 256) as u8, 128]
        })
        .collect();
    let mut jpeg = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 70);
    encoder.set_progressive(true);
    encoder
        .encode(&pixels, side, side, jpeg_encoder::ColorType::Rgb)
        .expect("encode a progressive JPEG");
    jpeg
}

/// Rewrites the height and width of a JPEG's first frame header.
pub fn claim_jpeg_size(jpeg: &mut [u8], width: u16, height: u16) {
    let sof = jpeg
        .windows(2)
        .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0..=0xC2))
        .expect("a frame header");
    // marker (2), length (2), precision (1), height (2), width (2)
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
}

/// A lossless WebP of `side` x `side` in one flat colour: a kilobyte or two.
pub fn flat_webp(side: u32) -> Vec<u8> {
    let image = RgbImage::from_pixel(side, side, Rgb([90, 120, 150]));
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, ImageFormat::WebP)
        .expect("encode a WebP");
    out.into_inner()
}

/// A 16-bit RGBA PNG of `side` x `side` in one flat colour: compresses to almost nothing.
pub fn flat_png16(side: u32) -> Vec<u8> {
    flat_png16_sized(side, side)
}

pub fn flat_png16_sized(width: u32, height: u32) -> Vec<u8> {
    let image = image::ImageBuffer::<image::Rgba<u16>, _>::from_pixel(
        width,
        height,
        image::Rgba([9000, 20000, 30000, 65535]),
    );
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

/// A 2000x2000 JPEG in one colour whose one scan is repeated `scans` times: each scan
/// decodes every block of the frame again.
pub fn jpeg_of_many_scans(scans: usize) -> Vec<u8> {
    let image = RgbImage::from_pixel(2000, 2000, Rgb([120, 90, 60]));
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, ImageFormat::Jpeg)
        .expect("encode a JPEG");
    let jpeg = out.into_inner();
    let sos = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a scan");
    let scan = &jpeg[sos..jpeg.len() - 2];
    let mut many = jpeg[..sos].to_vec();
    for _ in 0..scans {
        many.extend_from_slice(scan);
    }
    many.extend_from_slice(&[0xFF, 0xD9]);
    many
}
