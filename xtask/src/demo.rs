//! `cargo xtask demo`: a container from the built-in busybox image, showing
//! that it has its own hostname, is PID 1, and sees only its own processes,
//! mounts and network, and that its memory is limited — then the labs'
//! tours (lab 01's namespaces, lab 02's cgroups).

use std::process::Command;

use anyhow::Result;

use crate::setup::{self, cargo};

fn banner(text: &str) {
    println!("\n\x1b[1m### {text}\x1b[0m");
}

pub fn run() -> Result<()> {
    setup::install(&[])?;
    setup::run(&mut cargo(&[
        "build",
        "--quiet",
        "-p",
        "berth",
        "-p",
        "lab01-namespaces",
        "-p",
        "lab02-cgroups",
    ]))?;
    let berth = setup::target_bin("debug", "berth");

    banner("berth run --rm --hostname demo --network none busybox sh -c '…'");
    println!(
        "A container from the built-in busybox image (made from the host's /bin/busybox on first use).\n\
         --network none keeps this machine's network as it is: berth's default, the bridge\n\
         network of lab 04, would add a berth0 bridge, a firewall table and IP forwarding."
    );
    let script = "echo \"hostname: $(hostname)\"; echo \"my pid: $$\"; echo processes:; ps; echo mounts:; cat /proc/self/mounts; echo network:; ip -o link | cut -d' ' -f2,3";
    setup::run(Command::new(&berth).args([
        "run",
        "--rm",
        "--hostname",
        "demo",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        script,
    ]))?;
    println!(
        "\nOn the host, meanwhile: hostname {:?}, and this demo is pid {}.",
        hostname(),
        std::process::id()
    );

    if setup::is_root() {
        banner("berth run --rm --memory 16m busybox dd … bs=64M");
        println!(
            "A 16 MiB memory limit, and a program that wants 64 MiB: the kernel kills it (137 = 128 + SIGKILL)."
        );
        let status = Command::new(&berth)
            .args([
                "run",
                "--rm",
                "--memory",
                "16m",
                "--memory-swap",
                "16m",
                "--network",
                "none",
                "busybox",
            ])
            .args(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
            .status()?;
        println!("exit status: {}", status.code().unwrap_or(-1));

        banner("lab 01, step by step (target/debug/lab01-demo)");
        setup::run(&mut Command::new(setup::target_bin("debug", "lab01-demo")))?;
        banner("lab 02, step by step (target/debug/lab02-demo)");
        setup::run(&mut Command::new(setup::target_bin("debug", "lab02-demo")))?;
    } else {
        println!(
            "\n(rootless: berth ran the container in a user namespace; run `sudo -E cargo xtask demo` for the labs' tours, which need root)"
        );
    }
    println!(
        "\nNext: read the book (`mdbook serve book`, then http://localhost:3000) or start lab 01 (labs/01-namespaces/README.md)."
    );
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}
