//! The plinth plugin ABI, version 2.0: the only types that cross between the
//! `plinth` host and a plugin shared library. Everything is `#[repr(C)]`,
//! padding-free, and versioned separately from the crates (see ARCHITECTURE.md).
//!
//! # Loading, in order
//!
//! 1. The host opens the library (`RTLD_NOW | RTLD_LOCAL`, never closed) and reads the
//!    static [`PluginHeader`] at the symbol [`HEADER_SYMBOL`].
//! 2. Before calling anything it checks `magic`, `header_size`, `abi_major`, `flags`
//!    and `fingerprint` (see [`torch_fingerprint`]); a mismatch refuses the plugin.
//! 3. It calls `entry(host_minor, &mut api)` with `api.size` set to the host's
//!    `size_of::<PluginApi>()`. The plugin fills the fields both sides know, sets
//!    `api.size` to the size it filled and `api.minor` to the minor it will speak,
//!    `min(host_minor, plugin_minor)`.
//! 4. The host reads a [`PluginApi`] field only if `api.size` covers it and, for
//!    function pointers, if it is non-null.
//!
//! # Ownership
//!
//! * [`PlStr`] is a borrowed view, valid for the duration of the call that passes
//!   it (or for the life of the process when it comes from the static header).
//! * [`PlBuf`] is owned by the side that allocated it and is freed only by calling
//!   its `release` function (plugins allocate buffers they return; the host frees
//!   them through `release`).
//! * Requests, replies, stage params and record batches are the JSON encodings of
//!   `plinth-plugin-protocol`'s types, carried as [`PlStr`] in and [`PlBuf`] out.
//! * Tensors cross as `*mut c_void` handles to libtorch `at::Tensor` objects (tch's
//!   `C_tensor`). A tensor passed *into* a plugin is borrowed for the call; a tensor a
//!   plugin returns is a new handle the receiver owns. Only allowed when the
//!   fingerprints match exactly.
//!
//! # Evolution
//!
//! A minor version may only append fields to [`PluginApi`] and [`ComponentInfo`],
//! add component kinds or add status codes. Anything else is a new major.

#![no_std]
#![allow(unsafe_code)] // the ABI types need `unsafe impl Sync` and raw views

use core::ffi::c_void;

/// `b"PLINTHPL"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"PLINTHPL");
/// Incompatible changes bump the major; a host loads only plugins of its major.
pub const ABI_MAJOR: u32 = 2;
/// Compatible additions bump the minor; host and plugin negotiate the lower one.
pub const ABI_MINOR: u32 = 1;
/// The exported symbol holding the plugin's [`PluginHeader`].
pub const HEADER_SYMBOL: &[u8] = b"plinth_plugin_header\0";

/// Header flag: the plugin was built with `panic = "unwind"`, so its panic guards work.
pub const FLAG_PANIC_UNWIND: u32 = 1 << 0;
/// Header flag: the plugin links libtorch and may exchange tensor handles (it uses
/// `plinth-plugin-tensors`); only then is `fingerprint` set and compared.
pub const FLAG_LINKS_LIBTORCH: u32 = 1 << 1;

/// The libtorch a tensor-exchanging plugin must share with the host:
/// tch version, torch version, C++ ABI and build flavour, as one string compared
/// byte for byte. Plugins without libtorch leave the header's fingerprint empty.
pub const fn torch_fingerprint() -> &'static str {
    "tch=0.24.0;torch=2.11.0;cxx11abi=1"
}

/// A borrowed UTF-8 string or byte view: `(ptr, len)`, not NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PlStr {
    pub ptr: *const u8,
    pub len: usize,
}

// SAFETY: a PlStr in a static header points at static, immutable bytes.
unsafe impl Sync for PlStr {}

impl PlStr {
    pub const EMPTY: PlStr = PlStr { ptr: core::ptr::null(), len: 0 };

    /// A view of a static string, for headers.
    pub const fn from_static(s: &'static str) -> PlStr {
        PlStr { ptr: s.as_ptr(), len: s.len() }
    }

    /// A view of borrowed bytes, valid while `bytes` is.
    pub fn from_bytes(bytes: &[u8]) -> PlStr {
        PlStr { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    /// The viewed bytes.
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes that outlive the returned slice.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// An owned byte buffer that must be given back to `release` by whoever holds it.
#[repr(C)]
#[derive(Debug)]
pub struct PlBuf {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
    /// Frees the buffer; null for an empty buffer that owns nothing.
    pub release: Option<unsafe extern "C" fn(ptr: *mut u8, len: usize, cap: usize)>,
}

impl PlBuf {
    pub const EMPTY: PlBuf = PlBuf { ptr: core::ptr::null_mut(), len: 0, cap: 0, release: None };
}

/// Result of every ABI call. Errors come with an owned message in an out-parameter.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// The request was invalid (bad index, bad input); the message says why.
    InvalidArgument = 1,
    /// The component failed on this input; the plugin is still healthy.
    Failed = 2,
    /// The plugin panicked; this instance is poisoned and refuses further calls.
    Panicked = 3,
    /// An earlier panic poisoned the instance.
    Poisoned = 4,
    /// The call is not supported by this component kind.
    Unsupported = 5,
}

/// What a component is for.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// A tokenizer: `spec` is a `tokenizer.json` or a JSON training recipe.
    Tokenizer = 1,
    /// Data: `call` answers a typed request (documents, task rows, scores, guide steps).
    Data = 2,
    /// A task: `spec` is its task spec (head kind, loss, metrics, data component).
    Task = 3,
    /// An adapter or head: `spec` is JSON defaults; `forward` computes on tensors.
    Module = 4,
    /// A pipeline stage: `open` with params once, then `process` batches of records.
    Stage = 5,
}

/// Component flag: calls may come from several threads at once.
pub const COMPONENT_SYNC: u32 = 1 << 0;
/// Component flag: the component may be called from a thread other than the loader's.
pub const COMPONENT_SEND: u32 = 1 << 1;

/// Describes one component. Starts with its size; grows only at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ComponentInfo {
    /// Set by the host to its struct size; the plugin writes at most that and sets what it wrote.
    pub size: u32,
    /// A [`ComponentKind`] value; kinds unknown to the host are skipped.
    pub kind: u32,
    /// [`COMPONENT_SEND`] / [`COMPONENT_SYNC`].
    pub flags: u32,
    /// Zero; keeps the strings 8-byte aligned without padding.
    pub reserved: u32,
    /// Unique within the plugin; borrowed for the plugin's lifetime.
    pub name: PlStr,
    /// One line for `plinth plugins inspect`; borrowed for the plugin's lifetime.
    pub description: PlStr,
    /// The component's `plinth_plugin_protocol::ComponentSpec` as JSON; borrowed for the plugin's lifetime.
    pub spec: PlStr,
}

/// The function table a plugin fills in at `entry`. Starts with its size; grows
/// only at the end; every function may be null (then unsupported).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginApi {
    /// Bytes of this struct the filler knew about (host: its size; plugin: what it wrote).
    pub size: u32,
    /// The negotiated minor version.
    pub minor: u32,
    /// The plugin's instance, passed back on every call.
    pub instance: *mut c_void,
    /// Number of components.
    pub component_count: Option<unsafe extern "C" fn(instance: *mut c_void) -> u32>,
    /// Fills `out` (whose `size` the host set) for component `index`.
    pub component_info: Option<
        unsafe extern "C" fn(instance: *mut c_void, index: u32, out: *mut ComponentInfo, err: *mut PlBuf) -> Status,
    >,
    /// Data components: an encoded request in, the encoded reply out (owned by the
    /// host after return, freed through its `release`).
    pub call: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            index: u32,
            request: PlStr,
            out: *mut PlBuf,
            err: *mut PlBuf,
        ) -> Status,
    >,
    /// Stage components: checks the encoded params and opens a session, written to `*session`.
    pub open: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            index: u32,
            params: PlStr,
            session: *mut u64,
            err: *mut PlBuf,
        ) -> Status,
    >,
    /// Stage components: one encoded batch of records through an open session; the
    /// reply holds one outcome per record, in order.
    pub process: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            index: u32,
            session: u64,
            batch: PlStr,
            out: *mut PlBuf,
            err: *mut PlBuf,
        ) -> Status,
    >,
    /// Stage components: ends a session (unknown sessions are ignored).
    pub close: Option<unsafe extern "C" fn(instance: *mut c_void, index: u32, session: u64)>,
    /// Module components (null unless the header says the plugin links libtorch, as
    /// plugins built with `plinth-plugin-tensors` do): `input` is a borrowed `at::Tensor*`; `*output` receives a new
    /// handle the host owns. Autograd flows through.
    pub forward: Option<ForwardFn>,
    /// Module components: writes up to `cap` new parameter handles (owned by the host)
    /// to `out` and the total count to `*count`, so the host can train them.
    pub parameters: Option<ParametersFn>,
    /// True once a panic poisoned the instance.
    pub is_poisoned: Option<unsafe extern "C" fn(instance: *mut c_void) -> u8>,
}

/// [`PluginApi::forward`]: runs module `index` on a borrowed `at::Tensor*`.
pub type ForwardFn = unsafe extern "C" fn(
    instance: *mut c_void,
    index: u32,
    input: *mut c_void,
    output: *mut *mut c_void,
    err: *mut PlBuf,
) -> Status;

/// [`PluginApi::parameters`]: new handles on module `index`'s trainable parameters.
pub type ParametersFn = unsafe extern "C" fn(
    instance: *mut c_void,
    index: u32,
    out: *mut *mut c_void,
    cap: usize,
    count: *mut usize,
    err: *mut PlBuf,
) -> Status;

/// `entry(host_minor, api)`: negotiates and fills `api`; see the crate docs.
pub type EntryFn = unsafe extern "C" fn(host_minor: u32, api: *mut PluginApi, err: *mut PlBuf) -> Status;

/// The static header every plugin exports at [`HEADER_SYMBOL`].
#[repr(C)]
#[derive(Debug)]
pub struct PluginHeader {
    /// Always [`MAGIC`]; read first, before any other field.
    pub magic: u64,
    /// `size_of::<PluginHeader>()` as the plugin was built; the host needs at least its own.
    pub header_size: u32,
    /// [`ABI_MAJOR`] the plugin was built against; must equal the host's.
    pub abi_major: u32,
    /// [`ABI_MINOR`] the plugin was built against; the lower of the two is spoken.
    pub abi_minor: u32,
    /// [`FLAG_PANIC_UNWIND`] (required) and [`FLAG_LINKS_LIBTORCH`].
    pub flags: u32,
    /// Unique plugin id, e.g. `example` (ASCII letters, digits, `-`, `_`); static.
    pub id: PlStr,
    /// The plugin's own version (not the ABI's); static.
    pub version: PlStr,
    /// [`torch_fingerprint`] when `FLAG_LINKS_LIBTORCH` is set, else empty; static.
    pub fingerprint: PlStr,
    /// Called once, only after every check above passed; see [`EntryFn`].
    pub entry: Option<EntryFn>,
}

// SAFETY: the header is immutable static data.
unsafe impl Sync for PluginHeader {}

#[cfg(test)]
mod layout {
    //! Layout snapshots of ABI 2.0: a change here is an ABI break or an append.
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn header_2_0() {
        assert_eq!(size_of::<PluginHeader>(), 80);
        assert_eq!(offset_of!(PluginHeader, magic), 0);
        assert_eq!(offset_of!(PluginHeader, header_size), 8);
        assert_eq!(offset_of!(PluginHeader, abi_major), 12);
        assert_eq!(offset_of!(PluginHeader, abi_minor), 16);
        assert_eq!(offset_of!(PluginHeader, flags), 20);
        assert_eq!(offset_of!(PluginHeader, id), 24);
        assert_eq!(offset_of!(PluginHeader, version), 40);
        assert_eq!(offset_of!(PluginHeader, fingerprint), 56);
        assert_eq!(offset_of!(PluginHeader, entry), 72);
    }

    #[test]
    fn api_2_0() {
        assert_eq!(size_of::<PluginApi>(), 88);
        assert_eq!(offset_of!(PluginApi, size), 0);
        assert_eq!(offset_of!(PluginApi, minor), 4);
        assert_eq!(offset_of!(PluginApi, instance), 8);
        assert_eq!(offset_of!(PluginApi, component_count), 16);
        assert_eq!(offset_of!(PluginApi, component_info), 24);
        assert_eq!(offset_of!(PluginApi, call), 32);
        assert_eq!(offset_of!(PluginApi, open), 40);
        assert_eq!(offset_of!(PluginApi, process), 48);
        assert_eq!(offset_of!(PluginApi, close), 56);
        assert_eq!(offset_of!(PluginApi, forward), 64);
        assert_eq!(offset_of!(PluginApi, parameters), 72);
        assert_eq!(offset_of!(PluginApi, is_poisoned), 80);
    }

    #[test]
    fn component_info_and_buffers_2_0() {
        assert_eq!(size_of::<ComponentInfo>(), 64);
        assert_eq!(offset_of!(ComponentInfo, name), 16);
        assert_eq!(offset_of!(ComponentInfo, spec), 48);
        assert_eq!(size_of::<PlStr>(), 16);
        assert_eq!(size_of::<PlBuf>(), 32);
        assert_eq!(size_of::<Status>(), 4);
    }
}
