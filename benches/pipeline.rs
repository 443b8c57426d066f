//! `cargo bench`: the same measurement as `facelift bench` (every stage next to raw ONNX
//! Runtime, in one run) on the default 1280x720 frame. Needs `scripts/setup` first.

fn main() -> anyhow::Result<()> {
    let settings = facelift::Settings::load(None)?;
    let inputs = facelift::bench::Inputs {
        image: None,
        second: None,
    };
    facelift::bench::run(&settings, inputs, 50, false)
}
