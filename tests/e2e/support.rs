//! The test engine: a `berth` with a private root, cleaned up and checked
//! for leaks when dropped.

use std::path::PathBuf;
use std::time::Duration;

use assert_cmd::Command;

pub struct Berth {
    pub dir: tempfile::TempDir,
    /// The network namespace berth runs in, for the network tests: a
    /// throwaway "host" whose bridges, veth pairs and firewall go with it.
    pub host_netns: Option<network::netns::NetNs>,
}

impl Berth {
    /// A fresh engine, or `None` (after saying why) without root.
    pub fn new(test: &str) -> Option<Berth> {
        if !testkit::require_root(test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .unwrap();
        Some(Berth {
            dir,
            host_netns: None,
        })
    }

    /// A fresh engine that runs in a network namespace of its own, with
    /// loopback up: everything `berth` does to the network happens there.
    pub fn in_own_network(test: &str) -> Option<Berth> {
        let mut b = Berth::new(test)?;
        let ns = network::netns::NetNs::create(b.dir.path().join("host-netns")).unwrap();
        ns.run(|| network::link::Netlink::open()?.set_up("lo", true))
            .unwrap();
        b.host_netns = Some(ns);
        Some(b)
    }

    /// A command run as a program on the engine's "host": in its network
    /// namespace, if it has one.
    pub fn on_host(&self, program: &str) -> std::process::Command {
        match &self.host_netns {
            Some(ns) => {
                let mut c = std::process::Command::new("nsenter");
                c.arg(format!("--net={}", ns.path().display()))
                    .arg("--")
                    .arg(program);
                c
            }
            None => std::process::Command::new(program),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn runroot(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// `berth --root … --runroot …` ready for more arguments.
    pub fn cmd(&self) -> Command {
        let mut c = Command::from_std(self.on_host(env!("CARGO_BIN_EXE_berth")));
        c.arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.runroot())
            // Registry credentials (`login`) stay with the test.
            .env("BERTH_CONFIG", self.dir.path().join("config"));
        c.timeout(Duration::from_secs(60));
        c
    }

    /// Runs berth with `args` and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs berth and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "berth {args:?} failed ({code}): {err}");
        out
    }

    /// `inspect --format TEMPLATE NAME`, trimmed.
    pub fn inspect(&self, name: &str, template: &str) -> String {
        self.ok(&["inspect", "--format", template, name])
            .trim()
            .to_string()
    }

    /// The container's root filesystem on the host.
    pub fn rootfs(&self, name: &str) -> PathBuf {
        PathBuf::from(self.inspect(name, "{{.GraphDriver.Data.MergedDir}}"))
    }

    /// The directory that receives the container's writes: the overlay's
    /// upper layer, or with the copying driver the root itself.
    pub fn writable_layer(&self, name: &str) -> PathBuf {
        let upper = self.inspect(name, "{{.GraphDriver.Data.UpperDir}}");
        if upper.is_empty() || upper == "<no value>" {
            self.rootfs(name)
        } else {
            PathBuf::from(upper)
        }
    }

    /// Creates a container with the probe copied in as /probe (into its
    /// writable layer, as a stopped overlay container has nothing mounted).
    pub fn create_with_probe(&self, args: &[&str]) -> String {
        let mut full = vec!["create"];
        full.extend_from_slice(args);
        let id = self.ok(&full).trim().to_string();
        std::fs::copy(
            testkit::probe::probe_path(),
            self.writable_layer(&id).join("probe"),
        )
        .unwrap();
        id
    }

    /// Commits an image `name` from busybox with one file, `/made`, which
    /// its CMD prints; `changes` are more `commit` flags. Returns the image
    /// id.
    pub fn make_image(&self, name: &str, changes: &[&str]) -> String {
        let maker = ["--network", "none", "--name", "maker", "busybox"];
        self.ok(&[&["run"][..], &maker, &["sh", "-c", "echo made > /made"]].concat());
        let cmd = ["commit", "-c", r#"CMD ["cat", "/made"]"#];
        self.ok(&[&cmd[..], changes, &["maker", name]].concat());
        self.ok(&["rm", "maker"]);
        self.ok(&["images", "-q", "--no-trunc", name])
            .trim()
            .to_string()
    }

    /// Polls `inspect` until `template` renders as `want` (at most `secs`).
    pub fn wait_for(&self, name: &str, template: &str, want: &str, secs: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.inspect(name, template);
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: {template} is {got:?}, waited for {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let ids = self.run(&["ps", "-aq", "--no-trunc"]).1;
        for id in ids.split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        if let Some(ns) = self.host_netns.take() {
            let _ = ns.remove();
        }
        if std::thread::panicking() {
            // A failed test leaves no helper of its own running either (a
            // "remote" web server, say): whatever still names its directory,
            // and no namespace it pinned there (a "remote" host's).
            let dir = self.dir.path().to_string_lossy().into_owned();
            for (pid, _) in testkit::leaks::processes_mentioning(&dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
                if point.starts_with(&dir) {
                    let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
                }
            }
            return;
        }
        // Monitors exit right after their container; give them a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !testkit::leaks::processes_mentioning(&self.dir.path().to_string_lossy()).is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        testkit::leaks::assert_clean(self.dir.path());
        for id in ids.split_whitespace() {
            let left = cgroups_of(id);
            assert!(left.is_empty(), "cgroups left: {left:?}");
        }
        let left: Vec<_> = std::fs::read_dir(self.root().join("containers"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "container directories left: {left:?}");
    }
}

/// Starts a test with an engine, or returns when there is no root. The
/// engine runs in a network namespace of its own, as containers go on the
/// default bridge network unless a test says otherwise: the machine's own
/// network is never touched.
#[macro_export]
macro_rules! berth {
    () => {
        match $crate::support::Berth::in_own_network(module_path!()) {
            Some(b) => b,
            None => return,
        }
    };
}

/// The cgroup directories named for container `id` under the engine's
/// group, in any hierarchy (`/sys/fs/cgroup/berth/ID` on v2,
/// `/sys/fs/cgroup/CONTROLLER/berth/ID` on v1).
pub fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.to_path_buf()];
    dirs.extend(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    dirs.into_iter()
        .map(|d| d.join("berth").join(id))
        .filter(|p| p.exists())
        .collect()
}
