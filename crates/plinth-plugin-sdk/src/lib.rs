//! The plinth plugin SDK: describe components with typed Rust and call
//! [`export_plugin!`]; the SDK writes the ABI header, derives every stage's record
//! schema from its input and output types, encodes and decodes the protocol, and
//! supplies every `extern "C"` function, each behind a panic guard that poisons the
//! instance.
//!
//! ```ignore
//! use plinth_plugin_sdk::{export_plugin, Component, Error, Plugin};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Text { text: String }
//! #[derive(Serialize, JsonSchema)]
//! struct Shouted { shouted: String }
//!
//! struct Mine;
//! impl Plugin for Mine {
//!     fn components(&self) -> Vec<Component> {
//!         vec![Component::stage_fn("shout", "upper-cases `text`", |r: Text| {
//!             Ok::<_, Error>(Shouted { shouted: r.text.to_uppercase() })
//!         })]
//!     }
//! }
//! export_plugin!(id: "mine", version: "0.1.0", create: Mine);
//! ```
//!
//! Tensor modules (a forward pass across the ABI, with autograd) come from the
//! separate `plinth-plugin-tensors` crate, which links libtorch; this SDK does not,
//! so a plugin without tensors links no libtorch and needs no build script. This
//! crate and `plinth-plugin-tensors` are the only places with `unsafe` on the
//! plugin side; plugin crates contain none.

#![allow(unsafe_code)]

mod component;
mod instance;
mod schema;

pub use component::{Component, NoParams, RawModule, Stage};
#[doc(hidden)]
pub use instance::__entry;
pub use instance::{LocalPlugin, LocalStatus};
pub use plinth_abi as abi;
pub use plinth_plugin_protocol as protocol;
pub use schemars;
pub use serde;
pub use serde_json;

/// A plugin: a set of components, created once when the host loads the library.
pub trait Plugin: Send + 'static {
    fn components(&self) -> Vec<Component>;
}

/// Why a component refused a request or a record, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl std::fmt::Display) -> Self {
        Error(message.to_string())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_string())
    }
}

/// Header flags for a plugin built by this SDK, evaluated in the plugin crate.
#[doc(hidden)]
pub const fn __flags(panic_unwind: bool, links_libtorch: bool) -> u32 {
    let torch = if links_libtorch { plinth_abi::FLAG_LINKS_LIBTORCH } else { 0 };
    torch | if panic_unwind { plinth_abi::FLAG_PANIC_UNWIND } else { 0 }
}

/// Exports a plugin: `export_plugin!(id: "name", version: "1.0.0", create: expr)`,
/// where `expr` builds a value implementing [`Plugin`]. A plugin with tensor
/// modules adds `libtorch: plinth_plugin_tensors::LIBTORCH`, the fingerprint of the
/// libtorch it links, which the host compares before loading it.
#[macro_export]
macro_rules! export_plugin {
    (id: $id:literal, version: $version:expr, create: $create:expr) => {
        $crate::export_plugin!(@export $id, $version, $create, "");
    };
    (id: $id:literal, version: $version:expr, create: $create:expr, libtorch: $fp:expr) => {
        $crate::export_plugin!(@export $id, $version, $create, $fp);
    };
    (@export $id:literal, $version:expr, $create:expr, $fp:expr) => {
        #[allow(unsafe_code, non_upper_case_globals)]
        #[no_mangle]
        pub static plinth_plugin_header: $crate::abi::PluginHeader = $crate::abi::PluginHeader {
            magic: $crate::abi::MAGIC,
            header_size: ::core::mem::size_of::<$crate::abi::PluginHeader>() as u32,
            abi_major: $crate::abi::ABI_MAJOR,
            abi_minor: $crate::abi::ABI_MINOR,
            flags: $crate::__flags(cfg!(panic = "unwind"), !$fp.is_empty()),
            id: $crate::abi::PlStr::from_static($id),
            version: $crate::abi::PlStr::from_static($version),
            fingerprint: $crate::abi::PlStr::from_static($fp),
            entry: Some(__plinth_plugin_entry),
        };

        #[allow(unsafe_code)]
        unsafe extern "C" fn __plinth_plugin_entry(
            host_minor: u32,
            api: *mut $crate::abi::PluginApi,
            err: *mut $crate::abi::PlBuf,
        ) -> $crate::abi::Status {
            // SAFETY: forwarded unchanged from the host, which follows the ABI contract.
            unsafe { $crate::__entry(host_minor, api, err, !$fp.is_empty(), || Box::new($create)) }
        }
    };
}
