//! The Ansible side of the codegen plugin on arbitrary text: a module source file
//! through the DOCUMENTATION/EXAMPLES extraction, and the text as a generated task.
#![no_main]
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use plinth_plugin_codegen::{catalogue, extract};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let module = extract::SourceFile {
        fqcn: "ansible.builtin.fuzzed".into(),
        path: "ansible/modules/fuzzed.py".into(),
        text: text.to_string(),
    };
    let _ = extract::extract(&[module], &HashMap::new());
    let _ = catalogue::parse_task(text);
});
