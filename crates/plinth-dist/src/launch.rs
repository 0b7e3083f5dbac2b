//! `plinth launch`: starts `nproc` ranks of a command on this machine with
//! torchrun's variables, waits for them, and ends the rest `grace` seconds after
//! the first failure (so a dead rank never leaves the others blocked forever).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{DistError, Result};

/// What to launch.
#[derive(Debug, Clone)]
pub struct Launch {
    pub nproc: usize,
    /// The rendezvous port; `None`: a free one.
    pub master_port: Option<u16>,
    /// Seconds the other ranks get after one fails.
    pub grace: u64,
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Launch {
    /// Runs every rank to the end; an error names each rank that failed and how.
    pub fn run(&self) -> Result<()> {
        let fail = |m: String| DistError::Config(m);
        if self.nproc == 0 {
            return Err(fail("--nproc must be at least 1".into()));
        }
        let port = match self.master_port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| fail(format!("finding a free port: {e}")))?
                .port(),
        };
        let mut children = Vec::with_capacity(self.nproc);
        for rank in 0..self.nproc {
            let child = std::process::Command::new(&self.program)
                .args(&self.args)
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", self.nproc.to_string())
                .spawn()
                .map_err(|e| fail(format!("starting rank {rank}: {}: {e}", self.program.display())))?;
            children.push(Some(child));
        }
        let grace = self.grace;
        let mut failed: Vec<String> = Vec::new();
        let mut deadline: Option<Instant> = None;
        while children.iter().any(Option::is_some) {
            for (rank, slot) in children.iter_mut().enumerate() {
                let Some(child) = slot.as_mut() else { continue };
                if let Some(status) = child.try_wait().map_err(|e| fail(format!("waiting for rank {rank}: {e}")))? {
                    if !status.success() {
                        failed.push(format!("rank {rank} ({status})"));
                        deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(grace));
                    }
                    *slot = None;
                }
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                for (rank, slot) in children.iter_mut().enumerate() {
                    if let Some(mut child) = slot.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                        failed.push(format!("rank {rank} (ended by the launcher after --grace {grace} s)"));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !failed.is_empty() {
            return Err(fail(format!("{} of {} ranks failed: {}", failed.len(), self.nproc, failed.join(", "))));
        }
        Ok(())
    }
}
