//! A pipeline file's text, checked against the molecule plugin (in process):
//! every input is a pipeline or an error naming the file, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plinth_pipeline::Pipeline;
use plinth_plugin_test_support::PluginTest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    thread_local! {
        static PLUGINS: PluginTest =
            PluginTest::new("molecule", plinth_plugin_molecule::Molecule).expect("the molecule plugin starts");
    }
    PLUGINS.with(|p| {
        if let Err(e) = Pipeline::parse(text, std::path::Path::new("fuzz.toml"), p) {
            assert!(e.to_string().starts_with("fuzz.toml"), "an error that does not name the file: {e}");
        }
    });
});
