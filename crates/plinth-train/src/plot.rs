//! A dependency-light loss-curve PNG: axes, light grid, one polyline per series.
//! Numbers go to `metrics.jsonl`; the picture is for a quick look.

use std::path::Path;

use crate::{Result, TrainError};

/// One line on the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub points: Vec<(f64, f64)>,
    pub rgb: [u8; 3],
}

const W: usize = 800;
const H: usize = 480;
const MARGIN: usize = 40;

/// Draws `series` on shared axes (x from 0 to the largest x, y from the smallest
/// to the largest finite y) and writes a PNG to `path`.
pub fn write_line_chart(path: &Path, series: &[Series]) -> Result<()> {
    let mut img = vec![255u8; W * H * 3];
    let finite = || series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let x_max = finite().map(|p| p.0).fold(f64::MIN, f64::max).max(1.0);
    let y_min = finite().map(|p| p.1).fold(f64::MAX, f64::min);
    let y_max = finite().map(|p| p.1).fold(f64::MIN, f64::max);
    let (y_min, y_max) = if y_min < y_max { (y_min, y_max) } else { (y_min - 1.0, y_min + 1.0) };
    let to_px = |x: f64, y: f64| {
        let px = MARGIN as f64 + x / x_max * (W - 2 * MARGIN) as f64;
        let py = (H - MARGIN) as f64 - (y - y_min) / (y_max - y_min) * (H - 2 * MARGIN) as f64;
        (px, py)
    };
    for i in 0..=4 {
        let y = MARGIN + i * (H - 2 * MARGIN) / 4;
        draw_line(&mut img, (MARGIN as f64, y as f64), ((W - MARGIN) as f64, y as f64), [225, 225, 225]);
    }
    draw_line(&mut img, (MARGIN as f64, MARGIN as f64), (MARGIN as f64, (H - MARGIN) as f64), [0, 0, 0]);
    draw_line(&mut img, (MARGIN as f64, (H - MARGIN) as f64), ((W - MARGIN) as f64, (H - MARGIN) as f64), [0, 0, 0]);
    for s in series {
        let pts: Vec<(f64, f64)> =
            s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| to_px(x, y)).collect();
        for pair in pts.windows(2) {
            draw_line(&mut img, pair[0], pair[1], s.rgb);
        }
    }
    let file = std::fs::File::create(path).map_err(TrainError::io(path))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| TrainError::Checkpoint(format!("cannot write {}: {e}", path.display()));
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(&img).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

fn draw_line(img: &mut [u8], a: (f64, f64), b: (f64, f64), rgb: [u8; 3]) {
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        let (xi, yi) = (x.round() as isize, y.round() as isize);
        if xi >= 0 && yi >= 0 && (xi as usize) < W && (yi as usize) < H {
            let o = (yi as usize * W + xi as usize) * 3;
            img[o..o + 3].copy_from_slice(&rgb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_the_line_colour() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("loss.png");
        let s = Series { points: vec![(0.0, 3.0), (10.0, 1.0)], rgb: [200, 0, 0] };
        write_line_chart(&path, &[s]).expect("write");
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).expect("open")));
        let mut reader = decoder.read_info().expect("info");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        reader.next_frame(&mut buf).expect("frame");
        assert!(buf.chunks(3).any(|px| px == [200, 0, 0]), "the series colour must appear");
    }
}
