//! A container in its cgroup: lab 01's process chain, with the limits of
//! this lab applied before the first instruction of the container runs.

use namespaces::{ContainerConfig, Running, Stdio};

use crate::error::{Error, Result};
use crate::manager::{CgroupManager, Manager};
use crate::mode::Hierarchy;
use crate::resources::Resources;

/// A started container and the cgroup that holds it.
pub struct Limited {
    pub running: Running,
    pub cgroup: Manager,
}

// ANCHOR: spawn_limited
/// Creates the cgroup `parent/name` with `resources`, then starts the
/// container described by `config` inside it: the intermediate process
/// joins the cgroup before it creates the namespaces, so the container's
/// PID 1 and everything it forks are limited, and its cgroup namespace
/// shows that cgroup as `/`. If the container cannot start, the cgroup is
/// removed again.
pub fn spawn_limited(
    hierarchy: &Hierarchy,
    parent: &str,
    name: &str,
    resources: &Resources,
    mut config: ContainerConfig,
    stdio: Stdio,
) -> Result<Limited> {
    // BEGIN SOLUTION 02.7
    let cgroup = Manager::new(hierarchy, parent, name)?;
    cgroup.create(resources)?;
    config.cgroup_procs = cgroup.procs_files();
    match namespaces::spawn(&config, stdio) {
        Ok(running) => Ok(Limited { running, cgroup }),
        Err(e) => {
            let _ = cgroup.delete();
            Err(Error::Unsupported(format!("start the container: {e}")))
        }
    }
    // END SOLUTION
}
// ANCHOR_END: spawn_limited

/// The mounts that show a container its own cgroup at `/sys/fs/cgroup`,
/// read-only, as Docker gives them. With a cgroup namespace the mounted
/// tree starts at the container's own cgroup, so the container sees its
/// limits as the root's files and nothing of the host's other groups.
pub fn cgroup_mounts(hierarchy: &Hierarchy, in_user_ns: bool) -> Vec<namespaces::MountSpec> {
    use namespaces::MountSpec;
    let target = "/sys/fs/cgroup";
    if hierarchy.uses_v2() {
        return vec![MountSpec::new(
            target,
            "cgroup2",
            &["nosuid", "noexec", "nodev", "ro"],
        )];
    }
    // cgroup v1 cannot be mounted from inside a user namespace.
    if in_user_ns {
        return Vec::new();
    }
    let mut mounts = vec![MountSpec::new(
        target,
        "tmpfs",
        &["nosuid", "noexec", "nodev", "mode=755", "size=64k"],
    )];
    let mut seen = Vec::new();
    for (controller, mount) in &hierarchy.v1 {
        // Controllers mounted together (cpu,cpuacct) are one hierarchy.
        if seen.contains(&mount) {
            continue;
        }
        seen.push(mount);
        let dir = mount
            .file_name()
            .map_or(controller.name().to_string(), |n| {
                n.to_string_lossy().into_owned()
            });
        let options: Vec<&str> = hierarchy
            .v1
            .iter()
            .filter(|(_, m)| *m == mount)
            .map(|(c, _)| c.name())
            .chain(["nosuid", "noexec", "nodev", "ro"])
            .collect();
        mounts.push(MountSpec::new(
            &format!("{target}/{dir}"),
            "cgroup",
            &options,
        ));
    }
    mounts
}
