//! The safetensors reader on arbitrary bytes: open parses the header, then every
//! tensor it lists is read; an error or tensors, never a panic or a huge allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plinth_model::checkpoint::SafetensorsReader;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("plinth-fuzz-{}.safetensors", std::process::id()));
    std::fs::write(&path, data).expect("write the input");
    if let Ok(mut reader) = SafetensorsReader::open(&path) {
        let names: Vec<String> = reader.names().map(String::from).collect();
        for name in names {
            let _ = reader.read(&name);
        }
    }
});
