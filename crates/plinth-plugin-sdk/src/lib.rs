//! The plinth plugin SDK: implement [`Plugin`] in safe Rust and call
//! [`export_plugin!`]; the macro writes the ABI header and the SDK supplies every
//! `extern "C"` function, each behind a panic guard that poisons the instance.
//!
//! ```ignore
//! use plinth_plugin_sdk::{export_plugin, Component, Plugin};
//!
//! struct Mine;
//! impl Plugin for Mine {
//!     fn components(&self) -> Vec<Component> {
//!         vec![Component::stage("shout", "upper-cases the `text` field", |r: &str| Ok(r.to_uppercase()))]
//!     }
//! }
//! export_plugin!(id: "mine", version: "0.1.0", create: Mine);
//! ```
//!
//! This crate is the only place with `unsafe` on the plugin side; plugin crates
//! contain none.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

pub use plinth_abi as abi;
use plinth_abi::{ComponentInfo, ComponentKind, PlBuf, PlStr, PluginApi, Status};
pub use tch;

/// A plugin: a set of components, created once when the host loads the library.
pub trait Plugin: Send + 'static {
    fn components(&self) -> Vec<Component>;
}

/// A JSON-in, JSON-out function (data requests, pipeline stages).
pub type CallFn = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// A module computing on tensors (adapters, heads); autograd flows through it.
/// Tensors are not `Sync`, so modules are flagged `SEND` only and the host
/// serialises calls into them.
pub trait TensorModule: Send {
    fn forward(&self, input: &tch::Tensor) -> Result<tch::Tensor, String>;
    /// Trainable parameters the host should optimise.
    fn parameters(&self) -> Vec<tch::Tensor>;
}

enum Behaviour {
    Spec,
    Call(CallFn),
    Module(Box<dyn TensorModule>),
}

/// One component a plugin offers.
pub struct Component {
    kind: ComponentKind,
    name: String,
    description: String,
    spec: String,
    behaviour: Behaviour,
}

impl Component {
    /// A tokenizer, described by a `tokenizer.json` or a JSON training recipe.
    pub fn tokenizer(name: &str, description: &str, spec_json: &str) -> Self {
        Self::new(ComponentKind::Tokenizer, name, description, spec_json, Behaviour::Spec)
    }

    /// A task (head kind, loss, metrics) described by JSON.
    pub fn task(name: &str, description: &str, spec_json: &str) -> Self {
        Self::new(ComponentKind::Task, name, description, spec_json, Behaviour::Spec)
    }

    /// A data source answering JSON requests with JSON documents or rows.
    pub fn data(
        name: &str,
        description: &str,
        f: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        Self::new(ComponentKind::Data, name, description, "{}", Behaviour::Call(Box::new(f)))
    }

    /// A pipeline stage mapping one JSON record to another; `Err` rejects the record with a reason.
    pub fn stage(
        name: &str,
        description: &str,
        f: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        Self::new(ComponentKind::Stage, name, description, "{}", Behaviour::Call(Box::new(f)))
    }

    /// A pipeline stage that declares the record fields it reads and adds, so a
    /// pipeline can be type-checked before it runs: `spec_json` is
    /// `{"requires": {"smiles": "string"}, "adds": {"canonical": "string"}}` with
    /// types `string`, `number` or `bool`. A record's `params` field carries the
    /// pipeline's parameters for the stage.
    pub fn stage_with_schema(
        name: &str,
        description: &str,
        spec_json: &str,
        f: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        Self::new(ComponentKind::Stage, name, description, spec_json, Behaviour::Call(Box::new(f)))
    }

    /// An adapter or head module with JSON defaults.
    pub fn module(name: &str, description: &str, spec_json: &str, m: impl TensorModule + 'static) -> Self {
        Self::new(ComponentKind::Module, name, description, spec_json, Behaviour::Module(Box::new(m)))
    }

    fn new(kind: ComponentKind, name: &str, description: &str, spec: &str, behaviour: Behaviour) -> Self {
        Component { kind, name: name.into(), description: description.into(), spec: spec.into(), behaviour }
    }
}

/// The state behind `PluginApi::instance`.
struct Instance {
    components: Vec<Component>,
    poisoned: AtomicBool,
}

/// Header flags for a plugin built by this SDK, evaluated in the plugin crate.
#[doc(hidden)]
pub const fn __flags(panic_unwind: bool) -> u32 {
    plinth_abi::FLAG_LINKS_LIBTORCH | if panic_unwind { plinth_abi::FLAG_PANIC_UNWIND } else { 0 }
}

/// Exports a plugin: `export_plugin!(id: "name", version: "1.0.0", create: expr)`,
/// where `expr` builds a value implementing [`Plugin`].
#[macro_export]
macro_rules! export_plugin {
    (id: $id:literal, version: $version:expr, create: $create:expr) => {
        #[allow(unsafe_code, non_upper_case_globals)]
        #[no_mangle]
        pub static plinth_plugin_header: $crate::abi::PluginHeader = $crate::abi::PluginHeader {
            magic: $crate::abi::MAGIC,
            header_size: ::core::mem::size_of::<$crate::abi::PluginHeader>() as u32,
            abi_major: $crate::abi::ABI_MAJOR,
            abi_minor: $crate::abi::ABI_MINOR,
            flags: $crate::__flags(cfg!(panic = "unwind")),
            id: $crate::abi::PlStr::from_static($id),
            version: $crate::abi::PlStr::from_static($version),
            fingerprint: $crate::abi::PlStr::from_static($crate::abi::torch_fingerprint()),
            entry: Some(__plinth_plugin_entry),
        };

        #[allow(unsafe_code)]
        unsafe extern "C" fn __plinth_plugin_entry(
            host_minor: u32,
            api: *mut $crate::abi::PluginApi,
            err: *mut $crate::abi::PlBuf,
        ) -> $crate::abi::Status {
            // SAFETY: forwarded unchanged from the host, which follows the ABI contract.
            unsafe { $crate::__entry(host_minor, api, err, || Box::new($create)) }
        }
    };
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
    create: impl FnOnce() -> Box<dyn Plugin>,
) -> Status {
    if api.is_null() {
        return Status::InvalidArgument;
    }
    let built = catch_unwind(AssertUnwindSafe(|| create().components()));
    let components = match built {
        Ok(c) => c,
        Err(p) => {
            write_err(err, &format!("plugin panicked while starting: {}", panic_text(p.as_ref())));
            return Status::Panicked;
        }
    };
    let instance = Box::into_raw(Box::new(Instance { components, poisoned: AtomicBool::new(false) }));
    // Negotiation: the lower of the two minors (a no-op while ABI_MINOR is 0).
    #[allow(clippy::unnecessary_min_or_max)]
    let minor = host_minor.min(plinth_abi::ABI_MINOR);
    let ours = PluginApi {
        size: 0,
        minor,
        instance: instance.cast(),
        component_count: Some(component_count),
        component_info: Some(component_info),
        call: Some(call),
        forward: Some(forward),
        parameters: Some(parameters),
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

/// Runs `f` on the instance unless it is poisoned; a panic poisons it.
unsafe fn guarded(
    instance: *mut c_void,
    err: *mut PlBuf,
    f: impl FnOnce(&Instance) -> Result<(), (Status, String)>,
) -> Status {
    if instance.is_null() {
        write_err(err, "null plugin instance");
        return Status::InvalidArgument;
    }
    // SAFETY: the host passes back the pointer `__entry` created, never freed.
    let inst = unsafe { &*(instance as *const Instance) };
    if inst.poisoned.load(Ordering::SeqCst) {
        write_err(err, "the plugin panicked earlier and is poisoned; restart plinth to use it again");
        return Status::Poisoned;
    }
    match catch_unwind(AssertUnwindSafe(|| f(inst))) {
        Ok(Ok(())) => Status::Ok,
        Ok(Err((status, message))) => {
            write_err(err, &message);
            status
        }
        Err(p) => {
            inst.poisoned.store(true, Ordering::SeqCst);
            write_err(err, &format!("plugin panicked: {}", panic_text(p.as_ref())));
            Status::Panicked
        }
    }
}

fn component(inst: &Instance, index: u32) -> Result<&Component, (Status, String)> {
    inst.components.get(index as usize).ok_or_else(|| {
        (Status::InvalidArgument, format!("no component {index}; the plugin has {}", inst.components.len()))
    })
}

fn module(inst: &Instance, index: u32) -> Result<&dyn TensorModule, (Status, String)> {
    let c = component(inst, index)?;
    match &c.behaviour {
        Behaviour::Module(m) => Ok(m.as_ref()),
        _ => Err((Status::Unsupported, format!("component {} is not a module", c.name))),
    }
}

unsafe extern "C" fn component_count(instance: *mut c_void) -> u32 {
    if instance.is_null() {
        return 0;
    }
    // SAFETY: see `guarded`.
    unsafe { (*(instance as *const Instance)).components.len() as u32 }
}

unsafe extern "C" fn component_info(
    instance: *mut c_void,
    index: u32,
    out: *mut ComponentInfo,
    err: *mut PlBuf,
) -> Status {
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe {
        guarded(instance, err, |inst| {
            let c = component(inst, index)?;
            if out.is_null() {
                return Err((Status::InvalidArgument, "null ComponentInfo".into()));
            }
            let info = ComponentInfo {
                size: 0,
                kind: c.kind as u32,
                flags: match c.behaviour {
                    Behaviour::Module(_) => plinth_abi::COMPONENT_SEND,
                    _ => plinth_abi::COMPONENT_SEND | plinth_abi::COMPONENT_SYNC,
                },
                reserved: 0,
                name: PlStr::from_bytes(c.name.as_bytes()),
                description: PlStr::from_bytes(c.description.as_bytes()),
                spec: PlStr::from_bytes(c.spec.as_bytes()),
            };
            let n = ((*out).size as usize).min(std::mem::size_of::<ComponentInfo>());
            std::ptr::copy_nonoverlapping((&info as *const ComponentInfo).cast::<u8>(), out.cast::<u8>(), n);
            if n >= 4 {
                (*out).size = n as u32;
            }
            Ok(())
        })
    }
}

unsafe extern "C" fn call(instance: *mut c_void, index: u32, input: PlStr, out: *mut PlBuf, err: *mut PlBuf) -> Status {
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe {
        guarded(instance, err, |inst| {
            let c = component(inst, index)?;
            let Behaviour::Call(f) = &c.behaviour else {
                return Err((Status::Unsupported, format!("component {} does not take calls", c.name)));
            };
            let text = std::str::from_utf8(input.as_bytes())
                .map_err(|e| (Status::InvalidArgument, format!("input is not UTF-8: {e}")))?;
            let reply = f(text).map_err(|m| (Status::Failed, m))?;
            write_buf(out, reply.into_bytes());
            Ok(())
        })
    }
}

unsafe extern "C" fn forward(
    instance: *mut c_void,
    index: u32,
    input: *mut c_void,
    output: *mut *mut c_void,
    err: *mut PlBuf,
) -> Status {
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe {
        guarded(instance, err, |inst| {
            let m = module(inst, index)?;
            if input.is_null() || output.is_null() {
                return Err((Status::InvalidArgument, "null tensor handle".into()));
            }
            // A new handle on the host's tensor: same storage, same autograd node.
            let x = tch::Tensor::clone_from_ptr(input.cast::<torch_sys::C_tensor>());
            let mut y = m.forward(&x).map_err(|e| (Status::Failed, e))?;
            *output = y.as_mut_ptr().cast();
            std::mem::forget(y); // ownership of the handle passes to the host
            Ok(())
        })
    }
}

unsafe extern "C" fn parameters(
    instance: *mut c_void,
    index: u32,
    out: *mut *mut c_void,
    cap: usize,
    count: *mut usize,
    err: *mut PlBuf,
) -> Status {
    // SAFETY: arguments come from the host per the ABI contract.
    unsafe {
        guarded(instance, err, |inst| {
            let params = module(inst, index)?.parameters();
            if !count.is_null() {
                *count = params.len();
            }
            for (i, p) in params.into_iter().take(cap).enumerate() {
                let mut handle = p.shallow_clone();
                *out.add(i) = handle.as_mut_ptr().cast();
                std::mem::forget(handle);
            }
            Ok(())
        })
    }
}

unsafe extern "C" fn is_poisoned(instance: *mut c_void) -> u8 {
    if instance.is_null() {
        return 1;
    }
    // SAFETY: see `guarded`.
    unsafe { u8::from((*(instance as *const Instance)).poisoned.load(Ordering::SeqCst)) }
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
