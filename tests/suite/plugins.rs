//! Loading the example plugin through the C ABI: components, calls, tensors,
//! panics, and the trust rules. The behavioural tests run against two builds of
//! the same source: the workspace's, and a standalone crate outside the workspace
//! that depends only on the SDK, as a third party would build it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use plinth_plugin_host::{HostConfig, PluginHost};
use plinth_plugin_protocol::{ComponentSpec, CorpusRequest, Outcome, PluginsExt, Record};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

fn rec(v: Value) -> Record {
    v.as_object().cloned().unwrap_or_default()
}

const LIB: &str = "libplinth_plugin_example.so";

/// The example plugin as built by cargo next to this test binary (`target/release`).
fn built_example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let release = exe.parent().and_then(Path::parent).expect("target/release");
    let lib = release.join(LIB);
    assert!(lib.exists(), "{} missing: build the workspace first (`just test` does)", lib.display());
    lib
}

/// The same plugin source built the way a third party builds: a standalone crate
/// outside the workspace that depends only on the SDK and the tensors crate (built
/// once per test run).
fn external_example() -> PathBuf {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("checkout");
            let dir = tempfile::tempdir().expect("tempdir");
            let krate = dir.path().join("external-example");
            std::fs::create_dir_all(krate.join("src")).expect("mkdir");
            let manifest = format!(
                "[package]\nname = \"external-example\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nplinth-plugin-sdk = {{ path = \"{}\" }}\nplinth-plugin-tensors = {{ path = \"{}\" }}\nschemars = \"1\"\nserde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\n\n[profile.release]\ndebug = false\ncodegen-units = 16\n\n[workspace]\n",
                root.join("crates/plinth-plugin-sdk").display(),
                root.join("crates/plinth-plugin-tensors").display()
            );
            std::fs::write(krate.join("Cargo.toml"), manifest).expect("manifest");
            std::fs::copy(root.join("build/torch_rpath.rs"), krate.join("build.rs")).expect("build.rs");
            std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).expect("lock");
            std::fs::copy(root.join("plugins/example/src/lib.rs"), krate.join("src/lib.rs")).expect("source");
            let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "--quiet"])
                .current_dir(&krate)
                .output()
                .expect("run cargo");
            assert!(out.status.success(), "external build failed: {}", String::from_utf8_lossy(&out.stderr));
            let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| krate.join("target"));
            let built = target.join("release/libexternal_example.so");
            let kept = dir.path().join("libexternal_example.so");
            std::fs::copy(&built, &kept).expect("copy");
            let _ = std::fs::remove_file(&built); // keep the shared target folder free of test plugins
            (dir, kept)
        })
        .1
        .clone()
}

/// Private plugin directories holding a copy of the example plugin: one built in
/// the workspace, one built outside it. Every test below runs against both.
fn plugin_dirs() -> Vec<(tempfile::TempDir, PathBuf)> {
    [built_example(), external_example()]
        .into_iter()
        .map(|src| {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let lib = dir.path().join(LIB);
            std::fs::copy(src, &lib).expect("copy plugin");
            std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            (dir, lib)
        })
        .collect()
}

/// The in-workspace build only, for tests of host behaviour that does not depend
/// on how the plugin was built.
fn plugin_dir() -> (tempfile::TempDir, PathBuf) {
    plugin_dirs().swap_remove(0)
}

fn host_for(dirs: &[&Path]) -> PluginHost {
    PluginHost::new(HostConfig { search_paths: dirs.iter().map(|d| d.to_path_buf()).collect(), ..Default::default() })
}

#[test]
fn example_plugin_loads_with_every_component_kind() {
    for (dir, _) in plugin_dirs() {
        let mut host = host_for(&[dir.path()]);
        let found = host.discover();
        assert_eq!(found.len(), 1);
        let plugin = found[0].1.as_ref().expect("loads").clone();
        assert_eq!((plugin.id.as_str(), plugin.version.as_str()), ("example", "0.1.0"));
        assert_eq!(plugin.negotiated_minor, plinth_abi::ABI_MINOR);
        let kinds: Vec<String> = plugin.components.iter().map(|c| format!("{:?}:{}", c.kind, c.name)).collect();
        assert_eq!(
            kinds,
            [
                "Tokenizer:bytes",
                "Data:greetings",
                "Task:length",
                "Data:lengths",
                "Module:scale",
                "Module:identity",
                "Data:phrases",
                "Stage:shout",
                "Stage:explode"
            ]
        );
        let ComponentSpec::Task(spec) = &plugin.components[2].spec else { panic!("a task spec") };
        assert_eq!((spec.kind, spec.data.as_str()), (plinth_plugin_protocol::TaskKind::Regression, "lengths"));
        // A domain over the C ABI: one answer per value, in order, with the split asked for.
        let request = plinth_plugin_protocol::DomainRequest {
            values: vec!["  Hello   World ".into(), "   ".into()],
            features: true,
            split: Some(plinth_plugin_protocol::DomainSplit {
                name: "first-word".into(),
                validation_fraction: 0.1,
                test_fraction: 0.1,
                seed: 0,
            }),
        };
        let answers = host.ask("example", "phrases", &request).expect("domain answers");
        assert_eq!((answers[0].value.as_str(), answers[0].features.as_slice()), ("hello world", &[7, 22][..]));
        assert!(answers[0].split.is_some() && answers[1].reject.as_deref() == Some("an empty phrase"), "{answers:?}");
        let shout = host.open_stage("example", "shout", &Value::Null).expect("opens");
        let out = shout.run(&[rec(json!({"text": "hello", "id": 7})), rec(json!({"id": 8}))]).expect("one batch");
        assert_eq!(out[0], Outcome::Add(rec(json!({"text": "HELLO"}))), "only what the stage adds comes back");
        assert!(matches!(&out[1], Outcome::Reject(why) if why.contains("text")), "{:?}", out[1]);
        drop(shout);
        let docs = host.ask("example", "greetings", &CorpusRequest::default()).expect("corpus");
        assert!(docs.contains(&"hello world".to_string()));
        let err = host.open_stage("example", "shout", &json!({"loud": 1})).expect_err("bad params").to_string();
        assert!(err.contains("unknown field `loud`"), "{err}");
        assert!(plugin.call("nope", "{}").expect_err("unknown").to_string().contains("no component named nope"));
    }
}

#[test]
fn tensors_cross_without_copies_and_gradients_reach_both_sides() {
    for (dir, lib) in plugin_dirs() {
        let mut host = host_for(&[dir.path()]);
        let plugin = host.load(&lib).expect("load");
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
        let same = plugin.forward("identity", &x).expect("identity");
        assert_eq!(same.data_ptr(), x.data_ptr(), "the plugin must see and return the host's storage");
        let y = plugin.forward("scale", &x).expect("scale");
        let w = plugin.parameters("scale").expect("params");
        assert_eq!(w.len(), 1);
        y.sum(Kind::Float).backward();
        let gx: Vec<f32> = Vec::try_from(x.grad()).expect("x grad");
        assert_eq!(gx, vec![2.0, 2.0, 2.0], "host input gets dL/dx = w");
        assert_eq!(w[0].grad().double_value(&[0]), 6.0, "plugin parameter gets dL/dw = sum(x)");
    }
}

#[test]
fn a_panicking_plugin_is_contained_and_poisoned() {
    for (dir, lib) in plugin_dirs() {
        let mut host = host_for(&[dir.path()]);
        let plugin = host.load(&lib).expect("load");
        let run = |stage: &str, text: &str| {
            host.open_stage("example", stage, &Value::Null).and_then(|s| s.run(&[rec(json!({ "text": text }))]))
        };
        assert!(matches!(run("explode", "calm").expect("no panic")[0], Outcome::Add(_)));
        let err = run("explode", "boom").expect_err("panic").to_string();
        assert!(err.contains("Panicked") && err.contains("blow up"), "{err}");
        assert!(plugin.is_poisoned());
        let err = run("shout", "a").expect_err("poisoned").to_string();
        assert!(err.contains("Poisoned"), "{err}");
        // The host itself carries on.
        assert_eq!(host.plugins().len(), 1);
        assert_eq!((Tensor::from(2.0f64) * 3.0).double_value(&[]), 6.0);
    }
}

#[test]
fn one_file_is_one_plugin_and_one_id_is_one_file() {
    let (dir_a, lib_a) = plugin_dir();
    let (dir_b, lib_b) = plugin_dir();
    let mut host = host_for(&[dir_a.path(), dir_b.path()]);
    let first = host.load(&lib_a).expect("load");
    let again = host.load(&lib_a).expect("load again");
    assert!(Arc::ptr_eq(&first, &again));
    let err = host.load(&lib_b).expect_err("duplicate id").to_string();
    assert!(
        err.contains("already loaded") && err.contains(&dir_a.path().canonicalize().expect("c").display().to_string()),
        "{err}"
    );
}

#[test]
fn untrusted_files_are_refused() {
    let (dir, lib) = plugin_dir();
    // Outside the configured directories.
    let other = tempfile::tempdir().expect("tempdir");
    let err = host_for(&[other.path()]).load(&lib).expect_err("unconfigured").to_string();
    assert!(err.contains("not a configured plugin directory"), "{err}");
    // Writable by others: file, then directory.
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = host_for(&[dir.path()]).load(&lib).expect_err("world-writable file").to_string();
    assert!(err.contains("writable by other users") && err.contains("chmod go-w"), "{err}");
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = host_for(&[dir.path()]).load(&lib).expect_err("world-writable dir").to_string();
    assert!(err.contains("writable by other users"), "{err}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A folder another user owns (mode 755: that user can replace the file at will).
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } == 0 {
        let chown = |uid: &str| std::process::Command::new("chown").arg(uid).arg(dir.path()).status().expect("chown");
        assert!(chown("65534").success());
        let err = host_for(&[dir.path()]).load(&lib).expect_err("foreign folder").to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
        assert!(chown("0").success());
    }
    // Not a plugin at all.
    let junk = dir.path().join("libjunk.so");
    std::fs::write(&junk, b"not an ELF file").expect("write");
    let err = host_for(&[dir.path()]).load(&junk).expect_err("junk").to_string();
    assert!(err.contains("not a readable ELF shared library"), "{err}");
}

#[test]
fn pinned_hashes_are_enforced() {
    let (dir, lib) = plugin_dir();
    let actual = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(std::fs::read(&lib).expect("read")))
    };
    let wrong = "0".repeat(64);
    let mut cfg = HostConfig { search_paths: vec![dir.path().into()], ..Default::default() };
    cfg.pins.insert("example".into(), wrong.clone());
    let err = PluginHost::new(cfg.clone()).load(&lib).expect_err("pin mismatch").to_string();
    assert!(err.contains(&wrong) && err.contains(&actual), "the message names both hashes: {err}");
    cfg.pins.insert("example".into(), actual.clone());
    let plugin = PluginHost::new(cfg).load(&lib).expect("pinned hash matches");
    assert_eq!(plugin.sha256, actual);
}

/// An older host that knows only the first 16 bytes of `PluginApi` (size, minor,
/// instance) gets exactly those: the plugin writes no byte past the size the host
/// announced, and reports what it filled and the minor it will speak.
#[test]
#[allow(unsafe_code)]
fn entry_writes_only_the_prefix_the_host_knows() {
    let (_dir, lib) = plugin_dir();
    // SAFETY: a plinth plugin built by this workspace; the header symbol is a PluginHeader.
    unsafe {
        let library = libloading::Library::new(&lib).expect("dlopen");
        let header: libloading::Symbol<*const plinth_abi::PluginHeader> =
            library.get(plinth_abi::HEADER_SYMBOL).expect("header symbol");
        let entry = (**header).entry.expect("entry");
        let mut raw = [0xABu8; std::mem::size_of::<plinth_abi::PluginApi>()];
        raw[..4].copy_from_slice(&16u32.to_ne_bytes());
        let mut err = plinth_abi::PlBuf::EMPTY;
        let status = entry(0, raw.as_mut_ptr().cast(), &mut err);
        assert_eq!(status, plinth_abi::Status::Ok);
        assert_eq!(
            u32::from_ne_bytes(raw[..4].try_into().expect("4 bytes")),
            16,
            "the plugin reports the size it filled"
        );
        assert_eq!(
            u32::from_ne_bytes(raw[4..8].try_into().expect("4 bytes")),
            0,
            "negotiated minor is min(host, plugin)"
        );
        assert_ne!(&raw[8..16], &[0xAB; 8], "the instance pointer was written");
        assert!(raw[16..].iter().all(|&b| b == 0xAB), "nothing past the host's size was touched");
        std::mem::forget(library); // plugins are never unloaded
    }
}

/// The header read from the library file, before loading, is the one the loaded
/// library exports (for both builds).
#[test]
fn the_header_is_read_from_the_file_before_loading() {
    for (_dir, lib) in plugin_dirs() {
        let fields = plinth_plugin_host::header_from_file(&std::fs::read(&lib).expect("read")).expect("header");
        assert_eq!(fields.id, "example");
        assert_eq!(fields.version, "0.1.0");
        assert_eq!(fields.major, plinth_abi::ABI_MAJOR);
        assert_eq!(fields.fingerprint, plinth_abi::torch_fingerprint());
        plinth_plugin_host::validate_header(&fields).expect("compatible");
    }
}

/// A plugin file cut short (a copy interrupted, a full disk) is refused with its
/// reason, and the plugins beside it still load: the loader never maps it.
#[test]
fn a_truncated_library_is_refused_and_the_others_still_load() {
    let (dir, lib) = plugin_dir();
    let bytes = std::fs::read(&lib).expect("read");
    for (name, len) in [("libcut64k.so", 64 << 10), ("libcuthalf.so", bytes.len() / 2), ("libcut1.so", bytes.len() - 1)]
    {
        let cut = dir.path().join(name);
        std::fs::write(&cut, &bytes[..len]).expect("write");
        std::fs::set_permissions(&cut, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut host = host_for(&[dir.path()]);
    let found = host.discover();
    assert_eq!(found.len(), 4);
    for (path, result) in &found {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        match name.as_str() {
            LIB => assert_eq!(result.as_ref().expect("the intact plugin loads").id, "example"),
            _ => {
                let err = result.as_ref().expect_err("a cut file is refused").to_string();
                assert!(err.contains(&name) && err.contains("truncated"), "{err}");
            }
        }
    }
}

/// A stand-in for a tampered plugin: a C library whose constructor, run by the
/// dynamic loader the moment it is mapped, leaves a mark. Its header is valid
/// (id `evil`) and its entry function succeeds with no components.
fn tampered_library(dir: &Path, name: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let code = format!(
        r#"
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
typedef struct {{ const char *ptr; size_t len; }} PlStr;
typedef int (*EntryFn)(uint32_t, void *, void *);
typedef struct {{
    uint64_t magic; uint32_t header_size, abi_major, abi_minor, flags;
    PlStr id, version, fingerprint; EntryFn entry;
}} PluginHeader;
static int entry(uint32_t minor, void *api, void *err) {{ return 0; }}
__attribute__((visibility("default"))) const PluginHeader plinth_plugin_header = {{
    {magic}ULL, sizeof(PluginHeader), {major}, 0, 1,
    {{ "evil", 4 }}, {{ "6.6.6", 5 }}, {{ "", 0 }}, entry
}};
__attribute__((constructor)) static void mark(void) {{
    const char *path = getenv("PLINTH_TEST_MARK");
    if (path) {{ FILE *f = fopen(path, "a"); if (f) {{ fputs("ran\n", f); fclose(f); }} }}
}}
"#,
        magic = plinth_abi::MAGIC,
        major = plinth_abi::ABI_MAJOR
    );
    std::fs::write(&src, code).expect("write C source");
    let out = dir.join(format!("lib{name}.so"));
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
    std::fs::remove_file(&src).expect("rm source");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    out
}

/// Every refusal (pin, duplicate id, owner) happens before the library's own code
/// runs: its constructor leaves no mark. Loading it for real does leave one, so the
/// absence means something.
#[test]
fn tampered_libraries_are_refused_before_any_of_their_code_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marks = tempfile::tempdir().expect("tempdir");
    let mark = marks.path().join("mark");
    // The constructor reads this in its own process: the loading happens in a child.
    let child = |what: &str| -> (String, bool) {
        let _ = std::fs::remove_file(&mark);
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "plugins::tamper_child", "--nocapture", "--include-ignored"])
            .env("PLINTH_TEST_MARK", &mark)
            .env("PLINTH_TAMPER_CASE", what)
            .env("PLINTH_TAMPER_DIR", dir.path())
            .output()
            .expect("run child");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{what}: {text}{}", String::from_utf8_lossy(&out.stderr));
        (text, mark.exists())
    };
    let evil = tampered_library(dir.path(), "evil");
    std::fs::copy(&evil, dir.path().join("libevil2.so")).expect("copy");
    std::fs::set_permissions(dir.path().join("libevil2.so"), std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let (text, ran) = child("plain");
    assert!(text.contains("loaded evil 6.6.6"), "the header strings were read from the file: {text}");
    assert!(ran, "a library that passed the checks is loaded, and its constructor runs");

    let (text, ran) = child("pin");
    assert!(text.contains("pinned to SHA-256"), "{text}");
    assert!(!ran, "a pin mismatch refuses before the library is mapped");

    let (text, ran) = child("duplicate");
    assert!(text.contains("already loaded"), "{text}");
    assert!(!ran, "a duplicate id refuses before the library is mapped");

    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc_geteuid() } == 0;
    if root {
        let status = std::process::Command::new("chown").arg("65534").arg(&evil).status().expect("chown");
        assert!(status.success());
        let (text, ran) = child("plain");
        assert!(text.contains("owned by uid 65534") && text.contains("chown"), "{text}");
        assert!(!ran, "a file another user owns is refused before it is mapped");
    }
}

#[allow(unsafe_code)]
unsafe fn libc_geteuid() -> u32 {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() }
}

/// The child half of the test above (run only by it).
#[test]
#[ignore = "run as a child process by tampered_libraries_are_refused_before_any_of_their_code_runs"]
fn tamper_child() {
    let Some(dir) = std::env::var_os("PLINTH_TAMPER_DIR").map(PathBuf::from) else { return };
    let case = std::env::var("PLINTH_TAMPER_CASE").expect("case");
    let mut cfg = HostConfig { search_paths: vec![dir.clone()], ..Default::default() };
    let evil = dir.join("libevil.so");
    let result = match case.as_str() {
        "plain" => PluginHost::new(cfg).load(&evil).map(|p| println!("loaded {} {}", p.id, p.version)),
        "pin" => {
            cfg.pins.insert("evil".into(), "0".repeat(64));
            PluginHost::new(cfg).load(&evil).map(|_| ())
        }
        "duplicate" => {
            // A copy under another name holds id `evil` first (its constructor
            // runs; the mark is cleared), then the second file must be refused.
            let mut host = PluginHost::new(cfg);
            host.load(&dir.join("libevil2.so")).expect("the first copy loads");
            std::fs::remove_file(std::env::var_os("PLINTH_TEST_MARK").expect("mark")).expect("the first copy ran");
            host.load(&evil).map(|_| ())
        }
        other => panic!("unknown case {other}"),
    };
    if let Err(e) = result {
        println!("refused: {e}");
    }
}
