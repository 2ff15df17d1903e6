//! Lists audio devices as chingu sees them: `cargo run -p chingu-media --example list_devices`.

fn main() -> Result<(), chingu_media::MediaError> {
    for (kind, devices) in [
        ("input", chingu_media::audio_device::input_devices()?),
        ("output", chingu_media::audio_device::output_devices()?),
    ] {
        for d in devices {
            println!(
                "{kind}\t{}\t{}\t{}",
                if d.is_default { "*" } else { " " },
                d.id,
                d.name
            );
        }
    }
    Ok(())
}
