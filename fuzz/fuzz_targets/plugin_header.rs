//! The plugin header reader on arbitrary bytes (it runs on every file in a plugin
//! folder before any code is loaded): a header or a reason, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = plinth_plugin_host::header_from_file(data);
});
