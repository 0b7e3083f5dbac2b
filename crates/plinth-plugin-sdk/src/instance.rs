//! The plugin instance behind `PluginApi::instance`, the `extern "C"` functions
//! the host calls, and [`LocalPlugin`], the same instance driven in-process (for
//! `plinth-plugin-test-support`) through the very code paths the ABI uses.

use std::any::Any;
use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use plinth_abi::{ComponentInfo, PlBuf, PlStr, PluginApi, Status};
use plinth_plugin_protocol::ComponentSpec;

use crate::component::{check_components, Behaviour, Component};
use crate::Plugin;

type Session = Arc<dyn Any + Send + Sync>;

/// The state behind `PluginApi::instance`.
struct Instance {
    components: Vec<Component>,
    /// Each component's spec, encoded once for `component_info`.
    specs: Vec<String>,
    poisoned: AtomicBool,
    sessions: Mutex<HashMap<u64, (u32, Session)>>,
    next_session: AtomicU64,
}

type Failure = (Status, String);

impl Instance {
    /// Builds the plugin's components for a host speaking ABI minor `minor`:
    /// components of a role newer than that minor are left out, since that host
    /// could not read their spec.
    fn start(links_libtorch: bool, minor: u32, create: impl FnOnce() -> Box<dyn Plugin>) -> Result<Instance, Failure> {
        let built = catch_unwind(AssertUnwindSafe(|| create().components()));
        let mut components = built
            .map_err(|p| (Status::Panicked, format!("plugin panicked while starting: {}", panic_text(p.as_ref()))))?;
        check_components(&components, links_libtorch)
            .map_err(|e| (Status::Failed, format!("plugin components are inconsistent: {e}")))?;
        components.retain(|c| c.spec.as_ref().map_or(true, |s| s.since_minor() <= minor));
        let specs = components
            .iter()
            .map(|c| c.spec.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default()).unwrap_or_default())
            .collect();
        Ok(Instance {
            components,
            specs,
            poisoned: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        })
    }

    /// Runs `f` unless the instance is poisoned; a panic poisons it.
    fn guarded<T>(&self, f: impl FnOnce(&Instance) -> Result<T, Failure>) -> Result<T, Failure> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err((
                Status::Poisoned,
                "the plugin panicked earlier and is poisoned; restart plinth to use it again".into(),
            ));
        }
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(p) => {
                self.poisoned.store(true, Ordering::SeqCst);
                Err((Status::Panicked, format!("plugin panicked: {}", panic_text(p.as_ref()))))
            }
        }
    }

    fn component(&self, index: u32) -> Result<&Component, Failure> {
        self.components.get(index as usize).ok_or_else(|| {
            (Status::InvalidArgument, format!("no component {index}; the plugin has {}", self.components.len()))
        })
    }

    fn call(&self, index: u32, request: &str) -> Result<String, Failure> {
        self.guarded(|inst| {
            let c = inst.component(index)?;
            let Behaviour::Call(f) = &c.behaviour else {
                return Err((Status::Unsupported, format!("component {} does not answer requests", c.name)));
            };
            f(request).map_err(|e| (Status::Failed, e.to_string()))
        })
    }

    fn open(&self, index: u32, params: &str) -> Result<u64, Failure> {
        self.guarded(|inst| {
            let c = inst.component(index)?;
            let Behaviour::Stage(s) = &c.behaviour else {
                return Err((Status::Unsupported, format!("component {} is not a stage", c.name)));
            };
            let state: Session = Arc::from(s.open(params).map_err(|e| (Status::InvalidArgument, e.to_string()))?);
            let id = inst.next_session.fetch_add(1, Ordering::SeqCst);
            inst.sessions
                .lock()
                .map_err(|_| (Status::Failed, "session table poisoned".to_string()))?
                .insert(id, (index, state));
            Ok(id)
        })
    }

    fn process(&self, index: u32, session: u64, batch: &str) -> Result<String, Failure> {
        self.guarded(|inst| {
            let c = inst.component(index)?;
            let Behaviour::Stage(s) = &c.behaviour else {
                return Err((Status::Unsupported, format!("component {} is not a stage", c.name)));
            };
            let state = {
                let sessions =
                    inst.sessions.lock().map_err(|_| (Status::Failed, "session table poisoned".to_string()))?;
                match sessions.get(&session) {
                    Some((i, state)) if *i == index => state.clone(),
                    _ => {
                        return Err((
                            Status::InvalidArgument,
                            format!("stage {} has no open session {session}", c.name),
                        ))
                    }
                }
            };
            s.process(state.as_ref(), batch).map_err(|e| (Status::Failed, e.to_string()))
        })
    }

    /// Ends a session; its state is dropped outside the lock and behind the panic
    /// guard (a stage's state may run plugin code when dropped).
    fn close(&self, index: u32, session: u64) {
        let _ = self.guarded(|inst| {
            let state = match inst.sessions.lock() {
                Ok(mut sessions) if sessions.get(&session).is_some_and(|(i, _)| *i == index) => {
                    sessions.remove(&session)
                }
                _ => None,
            };
            drop(state);
            Ok(())
        });
    }
}

/// How a local call failed, as the ABI would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStatus {
    pub status: Status,
    pub message: String,
}

impl std::fmt::Display for LocalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.status, self.message)
    }
}

impl std::error::Error for LocalStatus {}

/// A plugin instance in this process, reached through the same guarded calls the
/// `extern "C"` functions make (panic containment and poisoning included), with
/// the ABI's pointers left out. For tests; the host uses the ABI.
pub struct LocalPlugin {
    instance: Instance,
}

// SAFETY: every behaviour but a tensor module is `Send + Sync` (calls, stages and
// their sessions); modules are only `Send`, and a LocalPlugin never reaches them
// (it has no forward or parameters call), so sharing it across threads cannot
// touch a module from two threads.
unsafe impl Sync for LocalPlugin {}

impl std::fmt::Debug for LocalPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalPlugin({} components)", self.instance.components.len())
    }
}

fn local(f: Failure) -> LocalStatus {
    LocalStatus { status: f.0, message: f.1 }
}

impl LocalPlugin {
    /// Starts the plugin as the host's load would: components built, cross-checked.
    /// Tensor modules are allowed (a local test has libtorch if it has tensors).
    pub fn start(plugin: impl Plugin) -> Result<Self, LocalStatus> {
        Instance::start(true, plinth_abi::ABI_MINOR, || Box::new(plugin))
            .map(|instance| LocalPlugin { instance })
            .map_err(local)
    }

    /// `(kind, name, description, spec)` of each component, in order.
    pub fn components(&self) -> Vec<(plinth_abi::ComponentKind, &str, &str, &ComponentSpec)> {
        self.instance
            .components
            .iter()
            .filter_map(|c| c.spec.as_ref().ok().map(|s| (c.kind, c.name.as_str(), c.description.as_str(), s)))
            .collect()
    }

    pub fn index(&self, name: &str) -> Option<u32> {
        self.instance.components.iter().position(|c| c.name == name).map(|i| i as u32)
    }

    pub fn call(&self, index: u32, request: &str) -> Result<String, LocalStatus> {
        self.instance.call(index, request).map_err(local)
    }

    pub fn open(&self, index: u32, params: &str) -> Result<u64, LocalStatus> {
        self.instance.open(index, params).map_err(local)
    }

    pub fn process(&self, index: u32, session: u64, batch: &str) -> Result<String, LocalStatus> {
        self.instance.process(index, session, batch).map_err(local)
    }

    pub fn close(&self, index: u32, session: u64) {
        self.instance.close(index, session)
    }

    pub fn is_poisoned(&self) -> bool {
        self.instance.poisoned.load(Ordering::SeqCst)
    }

    /// Open sessions (for tests that sessions are closed).
    pub fn open_sessions(&self) -> usize {
        self.instance.sessions.lock().map_or(0, |s| s.len())
    }
}

/// The body of every plugin's entry function.
///
/// # Safety
/// `api` and `err` must be valid for writes as the ABI documents; `api.size` must
/// hold the host's struct size.
#[doc(hidden)]
pub unsafe fn __entry(
    host_minor: u32,
    api: *mut PluginApi,
    err: *mut PlBuf,
    links_libtorch: bool,
    create: impl FnOnce() -> Box<dyn Plugin>,
) -> Status {
    if api.is_null() {
        return Status::InvalidArgument;
    }
    // Negotiation: the lower of the two minors.
    let minor = host_minor.min(plinth_abi::ABI_MINOR);
    let instance = match Instance::start(links_libtorch, minor, create) {
        Ok(i) => Box::into_raw(Box::new(i)),
        Err((status, message)) => {
            write_err(err, &message);
            return status;
        }
    };
    let ours = PluginApi {
        size: 0,
        minor,
        instance: instance.cast(),
        component_count: Some(component_count),
        component_info: Some(component_info),
        call: Some(call),
        open: Some(open),
        process: Some(process),
        close: Some(close),
        // Tensor functions only for a plugin whose header names the libtorch it links.
        forward: links_libtorch.then_some(forward as plinth_abi::ForwardFn),
        parameters: links_libtorch.then_some(parameters as plinth_abi::ParametersFn),
        is_poisoned: Some(is_poisoned),
    };
    // Write only the prefix both sides know (OBS's `sizeof info` rule).
    // SAFETY: api is non-null and valid for `host_size` bytes per the contract.
    unsafe {
        let host_size = (*api).size as usize;
        let n = host_size.min(std::mem::size_of::<PluginApi>());
        std::ptr::copy_nonoverlapping((&ours as *const PluginApi).cast::<u8>(), api.cast::<u8>(), n);
        if n >= 4 {
            (*api).size = n as u32;
        }
    }
    Status::Ok
}

/// The instance behind a host's pointer, or an error status.
///
/// # Safety
/// `instance` must be null or the pointer `__entry` created (never freed).
unsafe fn instance<'a>(instance: *mut c_void, err: *mut PlBuf) -> Option<&'a Instance> {
    if instance.is_null() {
        write_err(err, "null plugin instance");
        return None;
    }
    // SAFETY: per the contract above.
    Some(unsafe { &*(instance as *const Instance) })
}

/// Writes a call's result: the reply to `out`, or the message to `err`.
fn finish(result: Result<String, Failure>, out: *mut PlBuf, err: *mut PlBuf) -> Status {
    match result {
        Ok(reply) => {
            write_buf(out, reply.into_bytes());
            Status::Ok
        }
        Err((status, message)) => {
            write_err(err, &message);
            status
        }
    }
}

/// The body of every `extern "C"` function that answers: the instance behind the
/// host's pointer (else `InvalidArgument`), `f` on it, and its reply written to
/// `out` or its failure to `err`.
///
/// # Safety
/// `instance` must be null or the pointer `__entry` created; `out` and `err` null or
/// slots the host owns.
unsafe fn respond(
    instance: *mut c_void,
    out: *mut PlBuf,
    err: *mut PlBuf,
    f: impl FnOnce(&Instance) -> Result<String, Failure>,
) -> Status {
    // SAFETY: per the contract above.
    let Some(inst) = (unsafe { self::instance(instance, err) }) else { return Status::InvalidArgument };
    finish(f(inst), out, err)
}

/// The UTF-8 text of a borrowed view.
///
/// # Safety
/// `s` must point at `len` readable bytes for the call.
unsafe fn text<'a>(s: PlStr) -> Result<&'a str, Failure> {
    // SAFETY: per the contract above.
    std::str::from_utf8(unsafe { s.as_bytes() })
        .map_err(|e| (Status::InvalidArgument, format!("input is not UTF-8: {e}")))
}

unsafe extern "C" fn component_count(instance: *mut c_void) -> u32 {
    // SAFETY: the host passes back the pointer `__entry` created.
    unsafe { self::instance(instance, std::ptr::null_mut()) }.map_or(0, |i| i.components.len() as u32)
}

unsafe extern "C" fn component_info(
    instance: *mut c_void,
    index: u32,
    out: *mut ComponentInfo,
    err: *mut PlBuf,
) -> Status {
    let reply = |inst: &Instance| {
        inst.guarded(|inst| {
            let c = inst.component(index)?;
            if out.is_null() {
                return Err((Status::InvalidArgument, "null ComponentInfo".into()));
            }
            let flags = match c.behaviour {
                Behaviour::Module(_) => plinth_abi::COMPONENT_SEND,
                _ => plinth_abi::COMPONENT_SEND | plinth_abi::COMPONENT_SYNC,
            };
            let info = ComponentInfo {
                size: 0,
                kind: c.kind as u32,
                flags,
                reserved: 0,
                name: PlStr::from_bytes(c.name.as_bytes()),
                description: PlStr::from_bytes(c.description.as_bytes()),
                spec: PlStr::from_bytes(inst.specs[index as usize].as_bytes()),
            };
            // SAFETY: out is non-null; the host set `size` to what it may receive.
            unsafe {
                let n = ((*out).size as usize).min(std::mem::size_of::<ComponentInfo>());
                std::ptr::copy_nonoverlapping((&info as *const ComponentInfo).cast::<u8>(), out.cast::<u8>(), n);
                if n >= 4 {
                    (*out).size = n as u32;
                }
            }
            Ok(String::new())
        })
    };
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe { respond(instance, std::ptr::null_mut(), err, reply) }
}

unsafe extern "C" fn call(
    instance: *mut c_void,
    index: u32,
    request: PlStr,
    out: *mut PlBuf,
    err: *mut PlBuf,
) -> Status {
    // SAFETY: the request view lives for this call.
    let reply = |inst: &Instance| unsafe { text(request) }.and_then(|r| inst.call(index, r));
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe { respond(instance, out, err, reply) }
}

unsafe extern "C" fn open(
    instance: *mut c_void,
    index: u32,
    params: PlStr,
    session: *mut u64,
    err: *mut PlBuf,
) -> Status {
    let reply = |inst: &Instance| {
        if session.is_null() {
            return Err((Status::InvalidArgument, "null session slot".into()));
        }
        // SAFETY: the params view lives for this call.
        let id = inst.open(index, unsafe { text(params) }?)?;
        // SAFETY: a non-null slot the host owns.
        unsafe { session.write(id) };
        Ok(String::new())
    };
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe { respond(instance, std::ptr::null_mut(), err, reply) }
}

unsafe extern "C" fn process(
    instance: *mut c_void,
    index: u32,
    session: u64,
    batch: PlStr,
    out: *mut PlBuf,
    err: *mut PlBuf,
) -> Status {
    // SAFETY: the batch view lives for this call.
    let reply = |inst: &Instance| unsafe { text(batch) }.and_then(|b| inst.process(index, session, b));
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe { respond(instance, out, err, reply) }
}

unsafe extern "C" fn close(instance: *mut c_void, index: u32, session: u64) {
    // SAFETY: arguments come from the host per the ABI contract.
    if let Some(inst) = unsafe { self::instance(instance, std::ptr::null_mut()) } {
        inst.close(index, session);
    }
}

unsafe extern "C" fn is_poisoned(instance: *mut c_void) -> u8 {
    // SAFETY: the host passes back the pointer `__entry` created.
    unsafe { self::instance(instance, std::ptr::null_mut()) }.map_or(1, |i| u8::from(i.poisoned.load(Ordering::SeqCst)))
}

unsafe extern "C" fn release(ptr: *mut u8, len: usize, cap: usize) {
    if !ptr.is_null() {
        // SAFETY: (ptr, len, cap) came from a Vec<u8> this plugin leaked in `write_buf`.
        drop(unsafe { Vec::from_raw_parts(ptr, len, cap) });
    }
}

fn write_buf(out: *mut PlBuf, bytes: Vec<u8>) {
    if out.is_null() {
        return;
    }
    let mut bytes = std::mem::ManuallyDrop::new(bytes);
    let buf = PlBuf { ptr: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity(), release: Some(release) };
    // SAFETY: out is non-null and points at a PlBuf slot the host owns.
    unsafe { out.write(buf) };
}

fn write_err(err: *mut PlBuf, message: &str) {
    write_buf(err, message.as_bytes().to_vec());
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn module(inst: &Instance, index: u32) -> Result<&dyn crate::RawModule, Failure> {
    let c = inst.component(index)?;
    match &c.behaviour {
        Behaviour::Module(m) => Ok(m.as_ref()),
        _ => Err((Status::Unsupported, format!("component {} is not a module", c.name))),
    }
}

unsafe extern "C" fn forward(
    instance: *mut c_void,
    index: u32,
    input: *mut c_void,
    output: *mut *mut c_void,
    err: *mut PlBuf,
) -> Status {
    let reply = |inst: &Instance| {
        inst.guarded(|inst| {
            let m = module(inst, index)?;
            if input.is_null() || output.is_null() {
                return Err((Status::InvalidArgument, "null tensor handle".into()));
            }
            // SAFETY: a live at::Tensor* from the host, same libtorch (fingerprint checked
            // before loading); the new handle's ownership passes to the host.
            unsafe {
                let y = m.forward(input).map_err(|e| (Status::Failed, e.to_string()))?;
                *output = y;
            }
            Ok(String::new())
        })
    };
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe { respond(instance, std::ptr::null_mut(), err, reply) }
}

unsafe extern "C" fn parameters(
    instance: *mut c_void,
    index: u32,
    out: *mut *mut c_void,
    cap: usize,
    count: *mut usize,
    err: *mut PlBuf,
) -> Status {
    let reply = |inst: &Instance| {
        inst.guarded(|inst| {
            let m = module(inst, index)?;
            let slots: &mut [*mut c_void] = if out.is_null() || cap == 0 {
                &mut []
            } else {
                // SAFETY: the host gave room for `cap` handles at `out`.
                unsafe { std::slice::from_raw_parts_mut(out, cap) }
            };
            let n = m.parameters(slots);
            if !count.is_null() {
                // SAFETY: a host-owned slot.
                unsafe { *count = n };
            }
            Ok(String::new())
        })
    };
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe { respond(instance, std::ptr::null_mut(), err, reply) }
}
