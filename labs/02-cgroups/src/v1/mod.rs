//! cgroup v1: one hierarchy per controller. A container's cgroup is a
//! directory `berth/<id>` in *each* hierarchy, and a process joins it by
//! writing its pid into each one's `cgroup.procs`.

pub mod cpu;
pub mod cpuset;
pub mod devices;
pub mod freezer;
pub mod memory;
pub mod pids;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::manager::{self, CgroupManager};
use crate::mode::{Controller, Hierarchy};
use crate::resources::Resources;
use crate::stats::Stats;

/// A container's cgroup on a v1 (or hybrid) machine.
#[derive(Debug, Clone)]
pub struct Manager {
    /// For each mounted controller: (the engine's parent dir, the container's dir).
    dirs: BTreeMap<Controller, (PathBuf, PathBuf)>,
    hierarchy: Hierarchy,
}

impl Manager {
    pub fn new(hierarchy: &Hierarchy, parent: &str, name: &str) -> Self {
        let mut dirs = BTreeMap::new();
        for (controller, mount) in &hierarchy.v1 {
            let parent_dir = mount.join(parent);
            let dir = parent_dir.join(name);
            dirs.insert(*controller, (parent_dir, dir));
        }
        Manager {
            dirs,
            hierarchy: hierarchy.clone(),
        }
    }

    /// The container's directory in the hierarchy of `controller`.
    pub fn dir(&self, controller: Controller) -> Option<&std::path::Path> {
        self.dirs.get(&controller).map(|(_, d)| d.as_path())
    }

    /// The controllers `resources` needs; each must be mounted.
    fn check(&self, resources: &Resources) -> Result<()> {
        let mut needed = vec![Controller::Devices];
        if resources.memory.is_some() || resources.memory_swap.is_some() {
            needed.push(Controller::Memory);
        }
        if resources.cpu_shares.is_some() || resources.cpu_quota.is_some() {
            needed.push(Controller::Cpu);
        }
        if resources.cpuset_cpus.is_some() {
            needed.push(Controller::Cpuset);
        }
        if resources.pids.is_some() {
            needed.push(Controller::Pids);
        }
        for c in needed {
            self.hierarchy.check(c)?;
        }
        Ok(())
    }

    /// The distinct directories (controllers mounted together share one).
    fn unique_dirs(&self) -> Vec<&(PathBuf, PathBuf)> {
        let mut seen: Vec<&(PathBuf, PathBuf)> = Vec::new();
        for pair in self.dirs.values() {
            if !seen.iter().any(|p| p.1 == pair.1) {
                seen.push(pair);
            }
        }
        seen
    }

    fn create_inner(&self, resources: &Resources) -> Result<()> {
        for (controller, (parent, dir)) in &self.dirs {
            // Held until the container's group exists inside the parent.
            let _lock = manager::ParentLock::take(parent);
            manager::make_dir_all(parent)?;
            if *controller == Controller::Cpuset {
                // A new v1 cpuset starts with no CPUs and no memory nodes,
                // and no process can join it until both are filled in.
                cpuset::inherit(parent)?;
            }
            manager::make_dir(dir)?;
            if *controller == Controller::Cpuset {
                cpuset::inherit(dir)?;
            }
        }
        let dir = |c| self.dir(c);
        if let Some(d) = dir(Controller::Memory) {
            memory::apply(d, resources)?;
        }
        if let Some(d) = dir(Controller::Cpu) {
            cpu::apply(d, resources)?;
        }
        if let Some(d) = dir(Controller::Cpuset) {
            cpuset::apply(d, resources)?;
        }
        if let Some(d) = dir(Controller::Pids) {
            pids::apply(d, resources)?;
        }
        if let Some(d) = dir(Controller::Devices) {
            devices::apply(d, resources)?;
        }
        Ok(())
    }
}

impl CgroupManager for Manager {
    fn create(&self, resources: &Resources) -> Result<()> {
        self.check(resources)?;
        self.create_inner(resources).inspect_err(|_| {
            let _ = self.delete();
        })
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.unique_dirs()
            .into_iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect()
    }

    fn pids(&self) -> Result<Vec<i32>> {
        // Every hierarchy holds the same processes; any one will do.
        match self.unique_dirs().first() {
            Some((_, d)) => manager::read_pids(d),
            None => Ok(Vec::new()),
        }
    }

    fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        if let Some(d) = self.dir(Controller::Cpuacct) {
            cpu::usage(d, &mut stats)?;
        }
        if let Some(d) = self.dir(Controller::Cpu) {
            cpu::stats(d, &mut stats)?;
        }
        if let Some(d) = self.dir(Controller::Memory) {
            memory::stats(d, &mut stats)?;
        }
        if let Some(d) = self.dir(Controller::Pids) {
            pids::stats(d, &mut stats)?;
        }
        if let Some(d) = self.dir(Controller::Freezer) {
            stats.frozen = freezer::is_frozen(d)?;
        }
        Ok(stats)
    }

    fn freeze(&self) -> Result<()> {
        self.hierarchy.check(Controller::Freezer)?;
        freezer::freeze(self.dir(Controller::Freezer).expect("checked"))
    }

    fn thaw(&self) -> Result<()> {
        self.hierarchy.check(Controller::Freezer)?;
        freezer::thaw(self.dir(Controller::Freezer).expect("checked"))
    }

    fn kill_all(&self) -> Result<()> {
        // v1 has no "kill everything" file: freeze, so nothing can fork
        // while we go through the list, kill each, then thaw so that the
        // killed processes can die.
        let frozen = self.freeze().is_ok();
        for pid in self.pids()? {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if frozen {
            self.thaw()?;
        }
        Ok(())
    }

    fn delete(&self) -> Result<()> {
        let mut first_error = None;
        for (_, dir) in self.unique_dirs() {
            if let Err(e) = manager::remove_dir(dir) {
                first_error.get_or_insert(e);
            }
        }
        for (parent, _) in self.unique_dirs() {
            manager::remove_parent_if_empty(parent);
        }
        first_error.map_or(Ok(()), Err)
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.unique_dirs()
            .into_iter()
            .map(|(_, d)| d.clone())
            .collect()
    }
}
