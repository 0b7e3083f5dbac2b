//! Plugins written against the raw ABI in C (as a third party without the SDK
//! might): compiled with the system C compiler at test time, so each one is a real
//! shared library with exactly the header the test wants.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use plinth_plugin_host::{HostConfig, PluginHost};

const C_SOURCE: &str = r#"
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
typedef struct { const char* ptr; size_t len; } PlStr;
typedef struct { uint8_t* ptr; size_t len; size_t cap; void* release; } PlBuf;
typedef struct { uint32_t size; uint32_t minor; void* instance; void* fns[6]; } PluginApi;
typedef int32_t (*EntryFn)(uint32_t, PluginApi*, PlBuf*);
typedef struct {
    uint64_t magic; uint32_t header_size, abi_major, abi_minor, flags;
    PlStr id, version, fingerprint; EntryFn entry;
} PluginHeader;
/* A plugin that knows only the first 16 bytes of the table. */
static int32_t entry(uint32_t host_minor, PluginApi* api, PlBuf* err) {
    FILE* f = fopen(MARKER, "w"); if (f) fclose(f);
    (void)err; (void)host_minor;
    static int instance;
    api->size = 16; api->minor = 0; api->instance = &instance;
    return 0;
}
const PluginHeader plinth_plugin_header = {
    MAGIC, sizeof(PluginHeader), MAJOR, MINOR, FLAGS,
    { ID, sizeof(ID) - 1 }, { "0.0.1", 5 }, { FP, sizeof(FP) - 1 }, entry
};
"#;

struct Built {
    _dir: tempfile::TempDir,
    lib: PathBuf,
    marker: PathBuf,
}

/// Compiles the C plugin with the given header values into a private plugin folder.
fn build(id: &str, magic: u64, major: u32, flags: u32, fingerprint: &str) -> Built {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let src = dir.path().join("plugin.c");
    std::fs::write(&src, C_SOURCE).expect("write C");
    let lib = dir.path().join(format!("lib{id}.so"));
    let marker = dir.path().join("entry-ran");
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg(format!("-DMARKER=\"{}\"", marker.display()))
        .arg(format!("-DMAGIC={magic}ULL"))
        .arg(format!("-DMAJOR={major}"))
        .arg("-DMINOR=0")
        .arg(format!("-DFLAGS={flags}"))
        .arg(format!("-DID=\"{id}\""))
        .arg(format!("-DFP=\"{fingerprint}\""))
        .output()
        .expect("run the C compiler");
    assert!(out.status.success(), "cc failed: {}", String::from_utf8_lossy(&out.stderr));
    Built { _dir: dir, lib, marker }
}

fn load(b: &Built) -> Result<std::sync::Arc<plinth_plugin_host::Plugin>, String> {
    let dir = b.lib.parent().expect("dir").to_path_buf();
    PluginHost::new(HostConfig { search_paths: vec![dir], ..Default::default() })
        .load(&b.lib)
        .map_err(|e| e.to_string())
}

const UNWIND: u32 = plinth_abi::FLAG_PANIC_UNWIND;
const TORCH: u32 = plinth_abi::FLAG_LINKS_LIBTORCH;

#[test]
fn a_plugin_with_a_smaller_table_loads_and_reports_its_minor() {
    let b = build("c_minimal", plinth_abi::MAGIC, plinth_abi::ABI_MAJOR, UNWIND, "");
    let p = load(&b).expect("loads");
    assert_eq!((p.built_minor, p.negotiated_minor), (0, 0));
    assert!(p.components.is_empty(), "no component functions in its 16-byte table: none are read");
    assert!(!p.is_poisoned());
    assert!(Path::new(&b.marker).exists(), "entry ran for an accepted plugin");
    let err = p.call("anything", "{}").expect_err("no components").to_string();
    assert!(err.contains("no component named anything"), "{err}");
}

#[test]
fn refused_headers_run_no_plugin_function() {
    let fp = plinth_abi::torch_fingerprint();
    let cases = [
        (build("c_magic", 0x1234, plinth_abi::ABI_MAJOR, UNWIND, ""), "bad magic"),
        (
            build("c_major", plinth_abi::MAGIC, plinth_abi::ABI_MAJOR + 1, UNWIND, ""),
            "speaks plugin ABI 3.0, newer than this plinth's 2.1",
        ),
        (
            build("c_old", plinth_abi::MAGIC, plinth_abi::ABI_MAJOR - 1, UNWIND, ""),
            "built against plugin ABI 1.0, older than this plinth's 2.1; rebuild it against the current plinth-plugin-sdk",
        ),
        (build("c_abort", plinth_abi::MAGIC, plinth_abi::ABI_MAJOR, 0, ""), "panic = \"abort\""),
        (
            build(
                "c_torch",
                plinth_abi::MAGIC,
                plinth_abi::ABI_MAJOR,
                UNWIND | TORCH,
                "tch=0.23.0;torch=2.10.0;cxx11abi=1",
            ),
            "torch=2.10.0",
        ),
    ];
    for (b, want) in &cases {
        let err = load(b).expect_err("refused");
        assert!(err.contains(want), "expected {want:?} in {err}");
        assert!(!b.marker.exists(), "{err}: the plugin's entry must not run");
    }
    // The libtorch message names both sides.
    assert!(load(&cases[4].0).expect_err("refused").contains(fp));
}
