//! Ranks as processes on loopback: this test binary re-runs itself as each rank
//! (`rank_worker`, which does nothing unless `PLINTH_DIST_TEST_ROLE` is set).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use plinth_dist::{nccl_available, Backend, ProcessGroup, ReduceOp, Rendezvous};
use tch::{Kind, Tensor};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn spawn_rank(role: &str, rank: usize, world: usize, port: u16) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "rank_worker", "--nocapture", "--test-threads", "1"])
        .env("PLINTH_DIST_TEST_ROLE", role)
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("PLINTH_DIST_TIMEOUT_S", "20")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rank")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One rank's body, chosen by `PLINTH_DIST_TEST_ROLE`.
#[test]
fn rank_worker() {
    let Ok(role) = std::env::var("PLINTH_DIST_TEST_ROLE") else { return };
    let r = Rendezvous::from_env().expect("env").expect("distributed");
    let pg = ProcessGroup::init(&r).expect("init");
    match role.as_str() {
        "collectives" => {
            let mut t = vec![Tensor::full([3], (r.rank + 1) as f64, (Kind::Float, tch::Device::Cpu))];
            pg.all_reduce(&mut t, ReduceOp::Sum).expect("all_reduce");
            let sum: Vec<f32> = Vec::try_from(&t[0]).expect("values");
            let mut b = vec![Tensor::full([2], if r.rank == 0 { 7.0 } else { 0.0 }, (Kind::Float, tch::Device::Cpu))];
            pg.broadcast(&mut b, 0).expect("broadcast");
            let got: Vec<f32> = Vec::try_from(&b[0]).expect("values");
            let mut m = vec![Tensor::from_slice(&[r.rank as f32 * 10.0])];
            pg.all_reduce(&mut m, ReduceOp::Max).expect("max");
            pg.barrier().expect("barrier");
            println!("RESULT rank {} sum {:?} broadcast {:?} max {}", r.rank, sum, got, m[0].double_value(&[0]));
        }
        "dies" if r.rank == 1 => std::process::exit(3), // leaves without taking part
        "dies" => {
            let t0 = Instant::now();
            let mut t = vec![Tensor::ones([4], (Kind::Float, tch::Device::Cpu))];
            let err = pg.all_reduce(&mut t, ReduceOp::Sum).expect_err("the peer is gone");
            println!("RESULT error after {:.1} s: {err}", t0.elapsed().as_secs_f64());
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn two_ranks_all_reduce_broadcast_and_barrier() {
    let port = free_port();
    let children: Vec<_> = (0..2).map(|r| spawn_rank("collectives", r, 2, port)).collect();
    for (r, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("wait");
        let t = text(&out);
        assert!(out.status.success(), "rank {r}: {t}");
        assert!(
            t.contains(&format!("RESULT rank {r} sum [3.0, 3.0, 3.0] broadcast [7.0, 7.0] max 10")),
            "rank {r}: {t}"
        );
    }
}

#[test]
fn a_rank_that_dies_stops_the_other_with_an_error() {
    let port = free_port();
    let t0 = Instant::now();
    let children: Vec<_> = (0..2).map(|r| spawn_rank("dies", r, 2, port)).collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    assert_eq!(outs[1].status.code(), Some(3), "{}", text(&outs[1]));
    let t = text(&outs[0]);
    assert!(outs[0].status.success() && t.contains("RESULT error after") && t.contains("all_reduce"), "{t}");
    assert!(t0.elapsed() < Duration::from_secs(60), "took {:?}", t0.elapsed());
    eprintln!("{}", t.lines().find(|l| l.starts_with("RESULT")).unwrap_or_default());
}

#[test]
fn a_bad_rendezvous_address_fails_fast_with_the_address() {
    // Rank 1 of 2 connects to a port where nobody listens.
    let r = Rendezvous {
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        rank: 1,
        world_size: 2,
        local_rank: 1,
        timeout: Duration::from_secs(3),
        backend: Backend::Auto,
    };
    let t0 = Instant::now();
    let err = ProcessGroup::init(&r).expect_err("nobody listens").to_string();
    assert!(err.contains("rendezvous") && err.contains("MASTER_PORT"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30), "took {:?}", t0.elapsed());
    let bad = Rendezvous { master_addr: "no-such-host.invalid".into(), ..r };
    let err = ProcessGroup::init(&bad).expect_err("unresolvable").to_string();
    assert!(err.contains("no-such-host.invalid") && !err.contains("frame #"), "{err}");
    eprintln!("{err}");
}

#[test]
fn nccl_runs_collectives_on_a_gpu_or_says_why_it_cannot() {
    let r = Rendezvous {
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        rank: 0,
        world_size: 1,
        local_rank: 0,
        timeout: Duration::from_secs(20),
        backend: Backend::Nccl,
    };
    let err = ProcessGroup::init_on(&r, tch::Device::Cpu).expect_err("nccl on the cpu").to_string();
    assert!(err.contains("needs a CUDA training device") && err.contains("PLINTH_DIST_BACKEND=gloo"), "{err}");
    let gpu = tch::Device::Cuda(0);
    if nccl_available() && tch::Cuda::device_count() > 0 {
        let pg = ProcessGroup::init_on(&r, gpu).expect("nccl group");
        assert_eq!(pg.backend(), Backend::Nccl);
        let mut t = vec![Tensor::full([4], 2.5, (Kind::Float, gpu))];
        pg.all_reduce(&mut t, ReduceOp::Sum).expect("all_reduce");
        pg.broadcast(&mut t, 0).expect("broadcast");
        pg.barrier().expect("barrier");
        assert_eq!(Vec::<f32>::try_from(t[0].to_device(tch::Device::Cpu)).expect("values"), [2.5; 4]);
    } else {
        let err = ProcessGroup::init_on(&r, gpu).expect_err("no gpu or no nccl").to_string();
        let why = if nccl_available() { "CUDA device(s) are visible" } else { "has no NCCL" };
        assert!(err.contains(why), "{err}");
    }
}
