//! The loopback cluster test, bounded: `deploy/cluster/run.sh` with about 40 s of
//! load (three clustered nats-servers with the stream at R3, two instances of each
//! service, nginx in front; an instance, a NATS node and Postgres fail under load),
//! then every invariant checked. The full run is `bash deploy/cluster/run.sh`
//! (docs/operations.md). nextest runs this test alone (.config/nextest.toml).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_loopback_cluster_loses_nothing_under_faults() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    // target/<profile>/deps/<this test>: the binaries are built into the same target.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let target = profile_dir.parent().unwrap().to_path_buf();
    let cargo = std::env::var("CARGO")
        .ok()
        .or(option_env!("CARGO").map(String::from))
        .unwrap_or_else(|| "cargo".into());
    let out = Command::new("bash")
        .arg(root.join("deploy/cluster/run.sh"))
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .env("CLUSTER_BIN", target.join("debug"))
        .env("PATH", path_with_cargo(&cargo))
        .env("CLUSTER_DURATION", "40")
        .env("CLUSTER_RATE", "4")
        .env("CLUSTER_QUIESCE", "60")
        .output()
        .expect("bash runs deploy/cluster/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the cluster test failed (its report is above):\n{}",
        stdout
            .lines()
            .filter(|l| l.contains("FAIL") || l.contains("passed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// PATH with the folder of the cargo running the tests first.
fn path_with_cargo(cargo: &str) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = PathBuf::from(cargo)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| vec![d.to_path_buf()])
        .unwrap_or_default();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}
