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

pub mod launch;

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
        pub fn plinth_c10d_has_nccl() -> c_int;
        pub fn plinth_c10d_nccl_new(
            store: *mut c_void,
            rank: c_int,
            world_size: c_int,
            device: c_int,
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

/// Which c10d backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors, any machine.
    Gloo,
    /// NCCL: CUDA tensors, one GPU per rank (this build must have NCCL, see [`nccl_available`]).
    Nccl,
    /// NCCL when the training device is CUDA and this build has NCCL, else Gloo.
    Auto,
}

impl Backend {
    fn parse(v: &str) -> Result<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            "auto" | "" => Ok(Backend::Auto),
            other => Err(DistError::Config(format!("PLINTH_DIST_BACKEND={other:?} is not gloo, nccl or auto"))),
        }
    }

    /// The backend to use on `device`.
    pub fn resolve(self, device: tch::Device) -> Backend {
        match self {
            Backend::Auto if device.is_cuda() && nccl_available() => Backend::Nccl,
            Backend::Auto => Backend::Gloo,
            b => b,
        }
    }
}

/// Whether this build can create NCCL process groups (a CUDA libtorch and its
/// headers were found when plinth-dist was built).
pub fn nccl_available() -> bool {
    // SAFETY: a pure function of how the shim was compiled.
    unsafe { ffi::plinth_c10d_has_nccl() == 1 }
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
    /// `PLINTH_DIST_BACKEND` (gloo, nccl or auto, the default).
    pub backend: Backend,
}

/// The variables [`Rendezvous::from_env`] reads.
pub const ENV_VARS: [&str; 5] = ["MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"];

impl Rendezvous {
    /// Reads `MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE` and `LOCAL_RANK`
    /// (and `PLINTH_DIST_TIMEOUT_S`, default 300, and `PLINTH_DIST_BACKEND`). `None` when `WORLD_SIZE` is unset:
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
        let backend = Backend::parse(&get("PLINTH_DIST_BACKEND").unwrap_or_default())?;
        Ok(Some(Rendezvous {
            master_addr,
            master_port,
            rank,
            world_size,
            local_rank,
            timeout: Duration::from_secs(timeout_s as u64),
            backend,
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

/// A Gloo or NCCL process group: every rank calls each collective in the same order.
#[derive(Debug)]
pub struct ProcessGroup {
    group: NonNull<c_void>,
    _store: Store,
    rank: usize,
    world_size: usize,
    backend: Backend,
    /// Where the collectives' tensors live: the CPU for Gloo, this rank's GPU for NCCL.
    device: tch::Device,
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
    /// Joins the group described by `r` with Gloo (CPU tensors): rendezvous
    /// through the TCPStore at `master_addr:master_port`, then Gloo connects
    /// every pair of ranks. Fails with c10d's message after `r.timeout` if the
    /// others do not arrive.
    pub fn init(r: &Rendezvous) -> Result<Self> {
        Self::init_on(r, tch::Device::Cpu)
    }

    /// [`ProcessGroup::init`] for training on `device`: the backend is
    /// `r.backend` resolved for it (NCCL on CUDA when built with it); NCCL binds
    /// this rank to `device`'s GPU.
    pub fn init_on(r: &Rendezvous, device: tch::Device) -> Result<Self> {
        let backend = r.backend.resolve(device);
        let gpu = match (backend, device) {
            (Backend::Nccl, tch::Device::Cuda(i)) => i as c_int,
            (Backend::Nccl, other) => {
                return Err(DistError::Config(format!(
                    "the nccl backend needs a CUDA training device, not {other:?}; use --device cuda or PLINTH_DIST_BACKEND=gloo"
                )))
            }
            _ => -1,
        };
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
            let s = store.0.as_ptr();
            // SAFETY: store.0 is a live store; err/len describe a live buffer.
            NonNull::new(unsafe {
                match backend {
                    Backend::Nccl => ffi::plinth_c10d_nccl_new(s, rank, world, gpu, timeout_ms, err, len),
                    _ => ffi::plinth_c10d_gloo_new(s, rank, world, timeout_ms, err, len),
                }
            })
        })?;
        Ok(ProcessGroup {
            group,
            _store: store,
            rank: r.rank,
            world_size: r.world_size,
            backend,
            device: if backend == Backend::Nccl { device } else { tch::Device::Cpu },
            lock: std::sync::Mutex::new(()),
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The backend carrying the collectives (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where tensors passed to the collectives must live: the CPU for Gloo,
    /// this rank's GPU for NCCL.
    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// Combines each tensor across ranks in place (contiguous, same shape and
    /// dtype on every rank; on CPU for Gloo, on this rank's GPU for NCCL).
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
        let with =
            |b: &str| Rendezvous::from_vars(vars(&[("WORLD_SIZE", "1"), ("RANK", "0"), ("PLINTH_DIST_BACKEND", b)]));
        assert_eq!(with("nccl").expect("ok").expect("some").backend, Backend::Nccl);
        assert_eq!(with("GLOO").expect("ok").expect("some").backend, Backend::Gloo);
        let err = with("mpi").expect_err("unknown").to_string();
        assert!(err.contains("PLINTH_DIST_BACKEND") && err.contains("gloo, nccl or auto"), "{err}");
    }

    #[test]
    fn auto_picks_gloo_on_the_cpu() {
        assert_eq!(Backend::Auto.resolve(tch::Device::Cpu), Backend::Gloo);
        assert_eq!(Backend::Nccl.resolve(tch::Device::Cpu), Backend::Nccl, "an explicit choice stands");
        let cuda = Backend::Auto.resolve(tch::Device::Cuda(0));
        assert_eq!(cuda, if nccl_available() { Backend::Nccl } else { Backend::Gloo });
    }
}
