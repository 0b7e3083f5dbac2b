//! The plugin host: finds plinth plugins (shared libraries) in configured
//! directories, refuses untrusted or incompatible ones before any of their
//! functions run, negotiates the ABI minor, and wraps the C function table in a
//! safe API. Libraries are opened `RTLD_NOW | RTLD_LOCAL` and never closed.
//!
//! This crate and `plinth-plugin-sdk` are the only places where plinth code is
//! `unsafe`; every unsafe block says which ABI rule makes it sound.

#![allow(unsafe_code)]

mod elf;
mod header;

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use elf::header_from_file;
pub use header::{validate_header, HeaderFields, HeaderRefused};
pub use plinth_abi::ComponentKind;
use plinth_abi::{ComponentInfo, PlBuf, PlStr, PluginApi, PluginHeader, Status};
use plinth_plugin_protocol::{CallError, ComponentSpec, Plugins};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tch::Tensor;

/// The ABI major this host speaks.
pub fn abi_major() -> u32 {
    plinth_abi::ABI_MAJOR
}

/// The environment variable with extra plugin directories, `:`-separated.
pub const PLUGIN_PATH_ENV: &str = "PLINTH_PLUGIN_PATH";

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{path}: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("plugin config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("plugin {plugin}: component {component}: {status:?}: {message}")]
    Call { plugin: String, component: String, status: Status, message: String },
    #[error("plugin {plugin} has no component named {component}")]
    NoComponent { plugin: String, component: String },
    #[error("no plugin with id {0}; `plinth plugins list` shows what is loaded")]
    Unknown(String),
    /// No (single) prompted generation task to answer with; the message says which there are.
    #[error("{0}")]
    NoPrompted(String),
}

pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// Where plugins may come from and which hashes they must have.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Directories searched for `lib*.so` plugins; only these are trusted.
    #[serde(default)]
    pub search_paths: Vec<PathBuf>,
    /// Plugin id -> required SHA-256 of its library file (lower-case hex).
    #[serde(default)]
    pub pins: BTreeMap<String, String>,
}

impl HostConfig {
    /// Reads `configs/plugins.toml`-style files; relative search paths are taken
    /// relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| PluginError::Io { path: path.into(), source })?;
        let mut cfg: HostConfig =
            toml::from_str(&text).map_err(|e| PluginError::Config { path: path.into(), message: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.search_paths =
            cfg.search_paths.into_iter().map(|p| if p.is_absolute() { p } else { base.join(p) }).collect();
        Ok(cfg)
    }

    /// Appends the directories in `$PLINTH_PLUGIN_PATH`.
    pub fn with_env(mut self) -> Self {
        if let Some(v) = std::env::var_os(PLUGIN_PATH_ENV) {
            self.search_paths.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
        self
    }
}

/// What a component is, as the plugin described it.
#[derive(Debug, Clone)]
pub struct ComponentMeta {
    pub kind: ComponentKind,
    pub name: String,
    pub description: String,
    pub spec: ComponentSpec,
    pub send: bool,
    pub sync: bool,
}

/// A loaded plugin. Never unloaded: dropping it leaves the library mapped.
#[derive(Debug)]
pub struct Plugin {
    pub id: String,
    pub version: String,
    pub path: PathBuf,
    pub sha256: String,
    /// The ABI minor the plugin was built against, and the one negotiated.
    pub built_minor: u32,
    pub negotiated_minor: u32,
    pub fingerprint: String,
    pub components: Vec<ComponentMeta>,
    api: PluginApi,
    /// Calls into components that are not `Sync` are serialised through this lock.
    call_lock: Mutex<()>,
    _library: ManuallyDrop<libloading::os::unix::Library>,
}

// SAFETY: the plugin's instance is only reached through its ABI functions, which
// the SDK makes thread-safe for components flagged SEND|SYNC; others are
// serialised by `call_lock`.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

/// Loads and keeps plugins.
#[derive(Debug, Default)]
pub struct PluginHost {
    config: HostConfig,
    plugins: Vec<Arc<Plugin>>,
}

impl PluginHost {
    pub fn new(config: HostConfig) -> Self {
        PluginHost { config, plugins: Vec::new() }
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Every loaded plugin, in load order.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    pub fn get(&self, id: &str) -> Result<Arc<Plugin>> {
        self.plugins.iter().find(|p| p.id == id).cloned().ok_or_else(|| PluginError::Unknown(id.into()))
    }

    /// The prompted generation task of `plugin` named `task`, or its only one when
    /// `task` is `None`; the error says which tasks there are.
    pub fn prompted_task(&self, plugin: &str, task: Option<&str>) -> Result<String> {
        let p = self.get(plugin)?;
        let prompted: Vec<&str> = p
            .components
            .iter()
            .filter(|c| matches!(&c.spec, ComponentSpec::Task(s) if s.completion.is_some()))
            .map(|c| c.name.as_str())
            .collect();
        let no = PluginError::NoPrompted;
        match (task, prompted.as_slice()) {
            (Some(t), _) if prompted.contains(&t) => Ok(t.to_string()),
            (Some(t), []) => Err(no(format!("plugin {plugin} has no prompted generation task (asked for {t})"))),
            (Some(t), _) => {
                Err(no(format!("plugin {plugin} has no prompted generation task {t}; it has {}", prompted.join(", "))))
            }
            (None, [one]) => Ok(one.to_string()),
            (None, []) => Err(no(format!(
                "plugin {plugin} has no prompted generation task; `plinth plugins inspect {plugin}` lists its tasks"
            ))),
            (None, many) => Err(no(format!(
                "plugin {plugin} has several prompted generation tasks ({}); choose one with --task",
                many.join(", ")
            ))),
        }
    }

    /// Tries every `lib*.so` in the search paths; returns one result per file.
    pub fn discover(&mut self) -> Vec<(PathBuf, Result<Arc<Plugin>>)> {
        let mut files = Vec::new();
        for dir in self.config.search_paths.clone() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    name.starts_with("lib") && name.ends_with(".so")
                })
                .collect();
            found.sort();
            files.extend(found);
        }
        files.into_iter().map(|f| (f.clone(), self.load(&f))).collect()
    }

    /// Loads one library, or returns the already-loaded plugin for the same file.
    ///
    /// Trust is decided before any of the file's code runs: ownership and modes of
    /// the file and every folder above it, then the header, id, duplicate ids and
    /// SHA-256 pin, all read from the bytes of the opened file. Only a file that
    /// passed is handed to the dynamic loader, by that same open descriptor
    /// (`/proc/self/fd/N`), so it cannot be swapped for another between the checks
    /// and the load.
    pub fn load(&mut self, path: &Path) -> Result<Arc<Plugin>> {
        let refuse = |message: String| PluginError::Refused { path: path.into(), message };
        let canonical = path.canonicalize().map_err(|source| PluginError::Io { path: path.into(), source })?;
        if let Some(p) = self.plugins.iter().find(|p| p.path == canonical) {
            return Ok(p.clone());
        }
        self.check_trust(&canonical).map_err(refuse)?;
        let mut file =
            std::fs::File::open(&canonical).map_err(|source| PluginError::Io { path: path.into(), source })?;
        let meta = file.metadata().map_err(|source| PluginError::Io { path: path.into(), source })?;
        if !meta.is_file() {
            return Err(refuse("is not a regular file".into()));
        }
        // The opened file itself, in case the path changed after the check above.
        owner_and_mode_ok(&canonical, &meta).map_err(refuse)?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::io::Read::read_to_end(&mut file, &mut bytes)
            .map_err(|source| PluginError::Io { path: path.into(), source })?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        let fields = elf::header_from_file(&bytes).map_err(refuse)?;
        drop(bytes);
        validate_header(&fields).map_err(|e| refuse(e.0))?;
        if let Some(pinned) = self.config.pins.get(&fields.id) {
            if !pinned.eq_ignore_ascii_case(&sha256) {
                return Err(refuse(format!(
                    "plugin {} is pinned to SHA-256 {pinned} but this file has {sha256}; update the pin if you trust the new build",
                    fields.id
                )));
            }
        }
        if let Some(other) = self.plugins.iter().find(|p| p.id == fields.id) {
            return Err(refuse(format!(
                "plugin id {} is already loaded from {}; one id, one file",
                fields.id,
                other.path.display()
            )));
        }

        use std::os::fd::AsRawFd;
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        // SAFETY: the file passed every check above and is loaded through the
        // descriptor that was read and hashed; RTLD_LOCAL keeps its symbols private.
        let library = unsafe {
            libloading::os::unix::Library::open(
                Some(&by_fd),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        }
        .map_err(|e| refuse(format!("cannot load: {e}")))?;
        // The loader knows the library by the name `/proc/self/fd/N` and would hand
        // back this library for a later load by the same name, so the descriptor
        // stays open (and its number unused) for as long as the library is mapped:
        // for the life of the process, as plugins are never unloaded.
        std::mem::forget(file);
        let library = ManuallyDrop::new(library);
        // SAFETY: a data symbol's value is its address; we only read it as a header
        // after checking magic and size below.
        let header: *const PluginHeader = unsafe {
            match library.get::<*const PluginHeader>(plinth_abi::HEADER_SYMBOL) {
                Ok(sym) => *sym,
                Err(_) => return Err(refuse("not a plinth plugin (no plinth_plugin_header symbol)".into())),
            }
        };
        // SAFETY: the symbol exists; `read_header` reads the magic before anything else.
        let loaded = unsafe { header::read_header(header) }.map_err(refuse)?;
        if loaded != fields {
            return Err(refuse(format!(
                "the loaded header differs from the one in the file ({loaded:?} vs {fields:?}); refusing it"
            )));
        }
        // SAFETY: validated header of the ABI major we speak.
        let entry = unsafe { (*header).entry }.ok_or_else(|| refuse("header has no entry function".into()))?;
        let mut api = PluginApi {
            size: std::mem::size_of::<PluginApi>() as u32,
            minor: 0,
            instance: std::ptr::null_mut(),
            component_count: None,
            component_info: None,
            call: None,
            open: None,
            process: None,
            close: None,
            forward: None,
            parameters: None,
            is_poisoned: None,
        };
        let mut err = PlBuf::EMPTY;
        // SAFETY: entry follows the ABI contract: it writes at most api.size bytes.
        let status = unsafe { entry(plinth_abi::ABI_MINOR, &mut api, &mut err) };
        if status != Status::Ok {
            return Err(refuse(format!("plugin entry failed ({status:?}): {}", take_buf(&mut err))));
        }
        let mut plugin = Plugin {
            id: fields.id,
            version: fields.version,
            path: canonical,
            sha256,
            built_minor: fields.minor,
            negotiated_minor: api.minor,
            fingerprint: fields.fingerprint,
            components: Vec::new(),
            api,
            call_lock: Mutex::new(()),
            _library: library,
        };
        plugin.components = plugin.read_components().map_err(|e| refuse(e.to_string()))?;
        let plugin = Arc::new(plugin);
        self.plugins.push(plugin.clone());
        Ok(plugin)
    }

    /// A plugin file must sit directly in a configured directory, and it and every
    /// folder above it must pass [`owner_and_mode_ok`] (ssh's StrictModes rule).
    fn check_trust(&self, file: &Path) -> Result<(), String> {
        let dir = file.parent().ok_or("has no parent directory")?;
        let trusted = self.config.search_paths.iter().filter_map(|p| p.canonicalize().ok()).any(|p| p == dir);
        if !trusted {
            return Err(format!(
                "{} is not a configured plugin directory; add it to search_paths in configs/plugins.toml or to ${PLUGIN_PATH_ENV}",
                dir.display()
            ));
        }
        for p in file.ancestors() {
            let meta = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
            owner_and_mode_ok(p, &meta)?;
        }
        Ok(())
    }
}

/// Who may have put code at `path`: it must be owned by this user or by root, and
/// not writable by group or others, except a root-owned sticky folder such as
/// `/tmp`, where others cannot replace what is not theirs.
fn owner_and_mode_ok(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{} is owned by uid {}, not by you (uid {me}) or root, so that user can change the code plinth would run; take ownership (`chown`) if you trust it",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    let sticky_root_dir = meta.is_dir() && meta.uid() == 0 && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky_root_dir {
        return Err(format!(
            "{} is writable by other users (mode {:o}); run `chmod go-w {}` if you trust it",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

impl Plugin {
    fn read_components(&self) -> Result<Vec<ComponentMeta>> {
        let n = match self.api.component_count {
            // SAFETY: function from the negotiated table, instance from entry.
            Some(f) => unsafe { f(self.api.instance) },
            None => 0,
        };
        let Some(info_fn) = self.api.component_info else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut info = ComponentInfo {
                size: std::mem::size_of::<ComponentInfo>() as u32,
                kind: 0,
                flags: 0,
                reserved: 0,
                name: PlStr::EMPTY,
                description: PlStr::EMPTY,
                spec: PlStr::EMPTY,
            };
            let mut err = PlBuf::EMPTY;
            // SAFETY: as above; `info.size` tells the plugin how much it may write.
            let status = unsafe { info_fn(self.api.instance, i, &mut info, &mut err) };
            if status != Status::Ok {
                return Err(self.call_error(&format!("#{i}"), status, take_buf(&mut err)));
            }
            // SAFETY: strings in ComponentInfo live as long as the plugin instance.
            let text = |s: PlStr| unsafe { String::from_utf8_lossy(s.as_bytes()).into_owned() };
            let kind = match info.kind {
                1 => ComponentKind::Tokenizer,
                2 => ComponentKind::Data,
                3 => ComponentKind::Task,
                4 => ComponentKind::Module,
                5 => ComponentKind::Stage,
                _ => continue, // a kind from a later minor: ignored by this host
            };
            let name = text(info.name);
            let spec: ComponentSpec = serde_json::from_str(&text(info.spec)).map_err(|e| {
                self.call_error(
                    &name,
                    Status::InvalidArgument,
                    format!(
                        "declares a spec this host cannot read ({e}); rebuild the plugin against this plinth's SDK"
                    ),
                )
            })?;
            out.push(ComponentMeta {
                kind,
                name,
                description: text(info.description),
                spec,
                send: info.flags & plinth_abi::COMPONENT_SEND != 0,
                sync: info.flags & plinth_abi::COMPONENT_SYNC != 0,
            });
        }
        Ok(out)
    }

    /// The description of a component, by name.
    pub fn component(&self, name: &str) -> Result<&ComponentMeta> {
        self.index(name).map(|(_, meta)| meta)
    }

    fn index(&self, component: &str) -> Result<(u32, &ComponentMeta)> {
        self.components
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == component)
            .map(|(i, c)| (i as u32, c))
            .ok_or_else(|| PluginError::NoComponent { plugin: self.id.clone(), component: component.into() })
    }

    fn call_error(&self, component: &str, status: Status, message: String) -> PluginError {
        PluginError::Call { plugin: self.id.clone(), component: component.into(), status, message }
    }

    /// True once the plugin panicked; it then refuses every call.
    pub fn is_poisoned(&self) -> bool {
        // SAFETY: function from the negotiated table.
        self.api.is_poisoned.is_some_and(|f| unsafe { f(self.api.instance) } != 0)
    }

    /// Sends an encoded request to a data component and returns its encoded reply.
    pub fn call(&self, component: &str, request: &str) -> Result<String> {
        let (i, meta) = self.index(component)?;
        let f =
            self.api.call.ok_or_else(|| self.call_error(component, Status::Unsupported, "no call function".into()))?;
        let _serial = (!meta.sync).then(|| self.call_lock.lock());
        let (mut out, mut err) = (PlBuf::EMPTY, PlBuf::EMPTY);
        // SAFETY: `request` outlives the call; out/err are ours to receive buffers.
        let status = unsafe { f(self.api.instance, i, PlStr::from_bytes(request.as_bytes()), &mut out, &mut err) };
        let reply = take_buf(&mut out);
        match status {
            Status::Ok => Ok(reply),
            s => Err(self.call_error(component, s, take_buf(&mut err))),
        }
    }

    /// Opens a stage with encoded params; the plugin checks them and returns a session.
    pub fn open(&self, stage: &str, params: &str) -> Result<u64> {
        let (i, meta) = self.index(stage)?;
        let f = self.api.open.ok_or_else(|| self.call_error(stage, Status::Unsupported, "no open function".into()))?;
        let _serial = (!meta.sync).then(|| self.call_lock.lock());
        let (mut session, mut err) = (0u64, PlBuf::EMPTY);
        // SAFETY: `params` outlives the call; the session slot and err are ours.
        let status = unsafe { f(self.api.instance, i, PlStr::from_bytes(params.as_bytes()), &mut session, &mut err) };
        match status {
            Status::Ok => Ok(session),
            s => Err(self.call_error(stage, s, take_buf(&mut err))),
        }
    }

    /// One encoded batch of records through an open stage session.
    pub fn process(&self, stage: &str, session: u64, batch: &str) -> Result<String> {
        let (i, meta) = self.index(stage)?;
        let f = self
            .api
            .process
            .ok_or_else(|| self.call_error(stage, Status::Unsupported, "no process function".into()))?;
        let _serial = (!meta.sync).then(|| self.call_lock.lock());
        let (mut out, mut err) = (PlBuf::EMPTY, PlBuf::EMPTY);
        // SAFETY: `batch` outlives the call; out/err are ours to receive buffers.
        let status =
            unsafe { f(self.api.instance, i, session, PlStr::from_bytes(batch.as_bytes()), &mut out, &mut err) };
        let reply = take_buf(&mut out);
        match status {
            Status::Ok => Ok(reply),
            s => Err(self.call_error(stage, s, take_buf(&mut err))),
        }
    }

    /// Ends a stage session.
    pub fn close(&self, stage: &str, session: u64) {
        if let (Ok((i, _)), Some(f)) = (self.index(stage), self.api.close) {
            // SAFETY: function from the negotiated table; unknown sessions are ignored by contract.
            unsafe { f(self.api.instance, i, session) };
        }
    }

    /// Tensors may cross only to a plugin whose header names this process's
    /// libtorch (checked before it loaded); any other gets none.
    fn tensor_fn<F>(&self, component: &str, f: Option<F>) -> Result<F> {
        if self.fingerprint != plinth_abi::torch_fingerprint() {
            return Err(self.call_error(
                component,
                Status::Unsupported,
                "the plugin does not link plinth's libtorch (it was built without plinth-plugin-tensors), so it has no tensor modules".into(),
            ));
        }
        f.ok_or_else(|| self.call_error(component, Status::Unsupported, "no tensor functions".into()))
    }

    /// Runs a module component on `input`; gradients flow back through it. The
    /// plugin sees the host's tensor itself (no copy).
    pub fn forward(&self, component: &str, input: &Tensor) -> Result<Tensor> {
        let (i, meta) = self.index(component)?;
        let f = self.tensor_fn(component, self.api.forward)?;
        let _serial = (!meta.sync).then(|| self.call_lock.lock());
        let mut output: *mut c_void = std::ptr::null_mut();
        let mut err = PlBuf::EMPTY;
        // SAFETY: the fingerprint check guarantees one libtorch; the input handle is
        // borrowed for the call, the output handle becomes ours.
        let status = unsafe { f(self.api.instance, i, input.as_ptr() as *mut c_void, &mut output, &mut err) };
        if status != Status::Ok || output.is_null() {
            return Err(self.call_error(component, status, take_buf(&mut err)));
        }
        // SAFETY: a fresh at::Tensor* handle the plugin gave up.
        Ok(unsafe { Tensor::from_ptr(output.cast::<torch_sys::C_tensor>()) })
    }

    /// The trainable parameters of a module component, as tensors shared with the plugin.
    pub fn parameters(&self, component: &str) -> Result<Vec<Tensor>> {
        let (i, meta) = self.index(component)?;
        let _serial = (!meta.sync).then(|| self.call_lock.lock());
        let f = self.tensor_fn(component, self.api.parameters)?;
        let mut count = 0usize;
        let mut err = PlBuf::EMPTY;
        // SAFETY: a zero-capacity call only reports the count.
        let status = unsafe { f(self.api.instance, i, std::ptr::null_mut(), 0, &mut count, &mut err) };
        if status != Status::Ok {
            return Err(self.call_error(component, status, take_buf(&mut err)));
        }
        let mut handles: Vec<*mut c_void> = vec![std::ptr::null_mut(); count];
        // SAFETY: `handles` has room for `count` handles, each of which becomes ours.
        let status = unsafe { f(self.api.instance, i, handles.as_mut_ptr(), count, &mut count, &mut err) };
        if status != Status::Ok {
            return Err(self.call_error(component, status, take_buf(&mut err)));
        }
        // SAFETY: each non-null entry is a new at::Tensor* handle.
        Ok(handles.into_iter().filter(|h| !h.is_null()).map(|h| unsafe { Tensor::from_ptr(h.cast()) }).collect())
    }
}

/// Takes the text out of a plugin-owned buffer and gives the memory back to the plugin.
fn take_buf(buf: &mut PlBuf) -> String {
    let text = if buf.ptr.is_null() {
        String::new()
    } else {
        // SAFETY: the plugin wrote (ptr, len) for us; it stays valid until release.
        unsafe { String::from_utf8_lossy(std::slice::from_raw_parts(buf.ptr, buf.len)).into_owned() }
    };
    if let Some(release) = buf.release.take() {
        // SAFETY: the release function the plugin paired with this buffer.
        unsafe { release(buf.ptr, buf.len, buf.cap) };
    }
    *buf = PlBuf::EMPTY;
    text
}

/// The loaded plugins as host code reaches them: the typed protocol
/// (`plinth_plugin_protocol::PluginsExt`) runs on top of these calls.
impl Plugins for PluginHost {
    fn spec(&self, plugin: &str, component: &str) -> std::result::Result<ComponentSpec, CallError> {
        let p = self.get(plugin).map_err(|e| protocol_error(plugin, component, e))?;
        let meta = p.component(component).map_err(|e| protocol_error(plugin, component, e))?;
        Ok(meta.spec.clone())
    }

    fn call(&self, plugin: &str, component: &str, request: &str) -> std::result::Result<String, CallError> {
        self.get(plugin).and_then(|p| p.call(component, request)).map_err(|e| protocol_error(plugin, component, e))
    }

    fn open(&self, plugin: &str, stage: &str, params: &str) -> std::result::Result<u64, CallError> {
        self.get(plugin).and_then(|p| p.open(stage, params)).map_err(|e| protocol_error(plugin, stage, e))
    }

    fn process(&self, plugin: &str, stage: &str, session: u64, batch: &str) -> std::result::Result<String, CallError> {
        self.get(plugin).and_then(|p| p.process(stage, session, batch)).map_err(|e| protocol_error(plugin, stage, e))
    }

    fn close(&self, plugin: &str, stage: &str, session: u64) {
        if let Ok(p) = self.get(plugin) {
            p.close(stage, session);
        }
    }
}

/// A host error as the protocol reports it: the plugin's status and words, or the host's.
fn protocol_error(plugin: &str, component: &str, e: PluginError) -> CallError {
    // The plugin's own words; the status only where it adds something (a panic,
    // a poisoned plugin, a call the component does not support).
    let message = match e {
        PluginError::Call { status: Status::Failed | Status::InvalidArgument, message, .. } => message,
        PluginError::Call { status, message, .. } => format!("{status:?}: {message}"),
        other => other.to_string(),
    };
    CallError::new(plugin, component, message)
}
