//! Distributed training on PyTorch's own engine, c10d (what `torch.distributed`
//! runs on), which tch does not bind: a TCPStore rendezvous and a Gloo process
//! group with all-reduce, broadcast and barrier on tch tensors.
//!
//! The binding is a thin C ABI (`csrc/c10d_shim.cpp`) compiled against the same
//! libtorch headers tch uses; every C++ exception becomes an [`DistError`] with the
//! library's message. Ranks find each other through the variables `torchrun` and
//! cluster schedulers set ([`Rendezvous::from_env`]).

#![allow(unsafe_code)] // FFI to the C++ shim; each unsafe block says why it holds.

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("{0}")]
    Config(String),
    #[error("c10d {op} failed: {message}")]
    C10d { op: &'static str, message: String },
}

pub type Result<T, E = DistError> = std::result::Result<T, E>;

mod ffi {
    use super::*;

    extern "C" {
        pub fn plinth_c10d_store_new(
            host: *const c_char,
            port: u16,
            world_size: c_int,
            is_server: c_int,
            timeout_ms: i64,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut c_void;
        pub fn plinth_c10d_store_free(store: *mut c_void);
        pub fn plinth_c10d_gloo_new(
            store: *mut c_void,
            rank: c_int,
            world_size: c_int,
            timeout_ms: i64,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut c_void;
        pub fn plinth_c10d_group_free(group: *mut c_void);
        pub fn plinth_c10d_all_reduce(
            group: *mut c_void,
            tensors: *mut *mut c_void,
            n: usize,
            op: c_int,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        pub fn plinth_c10d_broadcast(
            group: *mut c_void,
            tensors: *mut *mut c_void,
            n: usize,
            root: c_int,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        pub fn plinth_c10d_barrier(group: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    }
}

const ERR_LEN: usize = 2048;

/// Calls `f` with an error buffer; turns a failure into [`DistError::C10d`].
fn checked<T>(op: &'static str, f: impl FnOnce(*mut c_char, usize) -> Option<T>) -> Result<T> {
    let mut buf = vec![0u8; ERR_LEN];
    match f(buf.as_mut_ptr().cast(), ERR_LEN) {
        Some(v) => Ok(v),
        None => {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let full = String::from_utf8_lossy(&buf[..end]);
            // c10d appends a C++ stack trace after its message; the message is what a user needs.
            let message = full.split("Exception raised from").next().unwrap_or_default().trim().to_string();
            Err(DistError::C10d { op, message: if message.is_empty() { "no message".into() } else { message } })
        }
    }
}

/// Where and how ranks meet: the `torchrun` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendezvous {
    pub master_addr: String,
    pub master_port: u16,
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    /// How long rendezvous and each collective may take before failing.
    pub timeout: Duration,
}

/// The variables [`Rendezvous::from_env`] reads.
pub const ENV_VARS: [&str; 5] = ["MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"];

impl Rendezvous {
    /// Reads `MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE` and `LOCAL_RANK`
    /// (and `PLINTH_DIST_TIMEOUT_S`, default 300). `None` when `WORLD_SIZE` is unset:
    /// a single process. A malformed or missing variable is an error naming it.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Rendezvous::from_env`] over any variable source (tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = get("WORLD_SIZE") else { return Ok(None) };
        let num = |key: &str, value: Option<String>| -> Result<usize> {
            let v = value.ok_or_else(|| {
                DistError::Config(format!(
                    "WORLD_SIZE is set, so {key} must be too (torchrun sets {})",
                    ENV_VARS.join(", ")
                ))
            })?;
            v.trim().parse().map_err(|_| DistError::Config(format!("{key}={v:?} is not a non-negative integer")))
        };
        let world_size = num("WORLD_SIZE", Some(world))?;
        let rank = num("RANK", get("RANK"))?;
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", Some(v))?,
            None => rank,
        };
        if world_size == 0 || rank >= world_size {
            return Err(DistError::Config(format!(
                "RANK {rank} must be below WORLD_SIZE {world_size} (and WORLD_SIZE above 0)"
            )));
        }
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port = num("MASTER_PORT", Some(get("MASTER_PORT").unwrap_or_else(|| "29500".into())))?;
        let master_port =
            u16::try_from(port).map_err(|_| DistError::Config(format!("MASTER_PORT {port} is not a TCP port")))?;
        let timeout_s = match get("PLINTH_DIST_TIMEOUT_S") {
            Some(v) => num("PLINTH_DIST_TIMEOUT_S", Some(v))?,
            None => 300,
        };
        Ok(Some(Rendezvous {
            master_addr,
            master_port,
            rank,
            world_size,
            local_rank,
            timeout: Duration::from_secs(timeout_s as u64),
        }))
    }
}

/// A TCPStore: rank 0 serves it, the others connect.
#[derive(Debug)]
struct Store(NonNull<c_void>);

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the pointer came from plinth_c10d_store_new and is freed once, here.
        unsafe { ffi::plinth_c10d_store_free(self.0.as_ptr()) }
    }
}

/// How [`ProcessGroup::all_reduce`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Product,
    Min,
    Max,
}

/// A Gloo process group: every rank calls each collective in the same order.
#[derive(Debug)]
pub struct ProcessGroup {
    group: NonNull<c_void>,
    _store: Store,
    rank: usize,
    world_size: usize,
    /// Held across each collective: calls from several threads are issued one at a time.
    lock: std::sync::Mutex<()>,
}

// SAFETY: the C++ objects are heap-allocated and owned by this value alone, so moving
// it to another thread is sound; every call into them holds `lock`, so sharing it
// between threads never runs two calls at once.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the pointer came from plinth_c10d_gloo_new and is freed once, here,
        // before the store it uses (field order).
        unsafe { ffi::plinth_c10d_group_free(self.group.as_ptr()) }
    }
}

impl ProcessGroup {
    /// Joins the group described by `r`: rendezvous through the TCPStore at
    /// `master_addr:master_port`, then Gloo connects every pair of ranks. Fails
    /// with c10d's message after `r.timeout` if the others do not arrive.
    pub fn init(r: &Rendezvous) -> Result<Self> {
        let host = CString::new(r.master_addr.clone())
            .map_err(|_| DistError::Config(format!("MASTER_ADDR {:?} contains a NUL byte", r.master_addr)))?;
        let timeout_ms = r.timeout.as_millis() as i64;
        let (world, rank) = (r.world_size as c_int, r.rank as c_int);
        let store = checked("rendezvous", |err, len| {
            // SAFETY: host is a valid C string for the call; err/len describe a live buffer.
            let p = unsafe {
                ffi::plinth_c10d_store_new(
                    host.as_ptr(),
                    r.master_port,
                    world,
                    c_int::from(r.rank == 0),
                    timeout_ms,
                    err,
                    len,
                )
            };
            NonNull::new(p).map(Store)
        })
        .map_err(|e| match e {
            DistError::C10d { message, .. } => DistError::C10d {
                op: "rendezvous",
                message: format!("{message} (MASTER_ADDR {}, MASTER_PORT {})", r.master_addr, r.master_port),
            },
            other => other,
        })?;
        let group = checked("process group", |err, len| {
            // SAFETY: store.0 is a live store; err/len describe a live buffer.
            NonNull::new(unsafe { ffi::plinth_c10d_gloo_new(store.0.as_ptr(), rank, world, timeout_ms, err, len) })
        })?;
        Ok(ProcessGroup {
            group,
            _store: store,
            rank: r.rank,
            world_size: r.world_size,
            lock: std::sync::Mutex::new(()),
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Combines each tensor across ranks in place (CPU, contiguous, same shape and
    /// dtype on every rank).
    pub fn all_reduce(&self, tensors: &mut [Tensor], op: ReduceOp) -> Result<()> {
        let code = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Product => 1,
            ReduceOp::Min => 2,
            ReduceOp::Max => 3,
        };
        let mut ptrs: Vec<*mut c_void> = tensors.iter_mut().map(|t| t.as_mut_ptr().cast()).collect();
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        checked("all_reduce", |err, len| {
            // SAFETY: ptrs point at live at::Tensor objects owned by `tensors` for the call.
            let rc = unsafe {
                ffi::plinth_c10d_all_reduce(self.group.as_ptr(), ptrs.as_mut_ptr(), ptrs.len(), code, err, len)
            };
            (rc == 0).then_some(())
        })
    }

    /// Copies each tensor from rank `root` to every rank, in place.
    pub fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<()> {
        let mut ptrs: Vec<*mut c_void> = tensors.iter_mut().map(|t| t.as_mut_ptr().cast()).collect();
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        checked("broadcast", |err, len| {
            // SAFETY: as in all_reduce.
            let rc = unsafe {
                ffi::plinth_c10d_broadcast(self.group.as_ptr(), ptrs.as_mut_ptr(), ptrs.len(), root as c_int, err, len)
            };
            (rc == 0).then_some(())
        })
    }

    /// Waits until every rank has reached the barrier.
    pub fn barrier(&self) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        checked("barrier", |err, len| {
            // SAFETY: the group is live; err/len describe a live buffer.
            (unsafe { ffi::plinth_c10d_barrier(self.group.as_ptr(), err, len) } == 0).then_some(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn torchrun_variables_are_read_and_checked() {
        assert_eq!(Rendezvous::from_vars(vars(&[])).expect("single"), None);
        let r = Rendezvous::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_PORT", "29511")]))
            .expect("ok")
            .expect("some");
        assert_eq!((r.rank, r.world_size, r.local_rank, r.master_port), (1, 2, 1, 29511));
        assert_eq!(r.master_addr, "127.0.0.1");
        let err = Rendezvous::from_vars(vars(&[("WORLD_SIZE", "2")])).expect_err("no rank").to_string();
        assert!(err.contains("RANK"), "{err}");
        let err = Rendezvous::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "2")])).expect_err("rank").to_string();
        assert!(err.contains("below WORLD_SIZE"), "{err}");
        let err = Rendezvous::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "70000")]))
            .expect_err("port")
            .to_string();
        assert!(err.contains("MASTER_PORT"), "{err}");
    }
}
