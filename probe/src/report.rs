//! The report: every top-level field the probe knows, how each is
//! collected, and how the selected ones are written as one JSON object.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::{caps, cgroup, etc, net, procfs, sys};

/// The value of one top-level field. `untagged`: each variant serializes as
/// just its content, so the variant names never appear in the output.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Section {
    Number(u32),
    Numbers(Option<Vec<u32>>),
    Text(Option<String>),
    Texts(Option<Vec<String>>),
    Map(BTreeMap<String, String>),
    IdMap(Option<Vec<procfs::IdMapEntry>>),
    Capabilities(caps::Capabilities),
    Mounts(Option<Vec<procfs::Mount>>),
    Namespaces(BTreeMap<&'static str, Option<u64>>),
    Cgroup(cgroup::Cgroup),
    Interfaces(Option<Vec<net::Interface>>),
    Routes(Option<Vec<net::Route>>),
    Resolver(Option<etc::Resolver>),
    Tty(sys::Tty),
    Rlimits(sys::Rlimits),
    Ipc(procfs::Ipc),
    PidNamespaceView(procfs::PidNamespaceView),
}

/// A top-level field: its name in the output and on the command line, and
/// the function that collects it.
pub struct Field {
    pub name: &'static str,
    collect: fn() -> Section,
}

/// Every field, in output order.
pub const FIELDS: &[Field] = &[
    Field {
        name: "pid",
        collect: || Section::Number(std::process::id()),
    },
    Field {
        name: "ppid",
        collect: || Section::Number(std::os::unix::process::parent_id()),
    },
    Field {
        name: "hostname",
        collect: || Section::Text(sys::uname().map(|uts| uts.nodename)),
    },
    Field {
        name: "domainname",
        collect: || Section::Text(sys::uname().map(|uts| uts.domainname)),
    },
    Field {
        name: "uid",
        collect: || Section::Number(sys::uid()),
    },
    Field {
        name: "gid",
        collect: || Section::Number(sys::gid()),
    },
    Field {
        name: "euid",
        collect: || Section::Number(sys::euid()),
    },
    Field {
        name: "egid",
        collect: || Section::Number(sys::egid()),
    },
    Field {
        name: "groups",
        collect: || Section::Numbers(sys::groups()),
    },
    Field {
        name: "uid_map",
        collect: || Section::IdMap(procfs::id_map("/proc/self/uid_map")),
    },
    Field {
        name: "gid_map",
        collect: || Section::IdMap(procfs::id_map("/proc/self/gid_map")),
    },
    Field {
        name: "capabilities",
        collect: || Section::Capabilities(caps::read()),
    },
    Field {
        name: "mounts",
        collect: || Section::Mounts(procfs::mounts()),
    },
    Field {
        name: "namespaces",
        collect: || Section::Namespaces(procfs::namespaces()),
    },
    Field {
        name: "cgroup",
        collect: || Section::Cgroup(cgroup::read()),
    },
    Field {
        name: "interfaces",
        collect: || Section::Interfaces(net::interfaces()),
    },
    Field {
        name: "routes",
        collect: || Section::Routes(net::ipv4_routes()),
    },
    Field {
        name: "ipv6_routes",
        collect: || Section::Routes(net::ipv6_routes()),
    },
    Field {
        name: "resolver",
        collect: || Section::Resolver(etc::resolver()),
    },
    Field {
        name: "hosts",
        collect: || Section::Texts(etc::hosts()),
    },
    Field {
        name: "hostname_file",
        collect: || Section::Text(etc::hostname()),
    },
    Field {
        name: "env",
        collect: || Section::Map(sys::env()),
    },
    Field {
        name: "argv",
        collect: || Section::Texts(Some(sys::argv())),
    },
    Field {
        name: "cwd",
        collect: || {
            let cwd = std::env::current_dir().ok();
            Section::Text(cwd.map(|path| path.to_string_lossy().into_owned()))
        },
    },
    Field {
        name: "exe",
        collect: || {
            let exe = fs::read_link("/proc/self/exe").ok();
            Section::Text(exe.map(|path| path.to_string_lossy().into_owned()))
        },
    },
    Field {
        name: "tty",
        collect: || Section::Tty(sys::tty()),
    },
    Field {
        name: "rlimits",
        collect: || Section::Rlimits(sys::rlimits()),
    },
    Field {
        name: "ipc",
        collect: || Section::Ipc(procfs::ipc()),
    },
    Field {
        name: "pid_namespace_view",
        collect: || Section::PidNamespaceView(procfs::pid_namespace_view()),
    },
];

/// Whether `name` is a top-level field.
pub fn is_field(name: &str) -> bool {
    FIELDS.iter().any(|field| field.name == name)
}

/// The collected fields, in the order of [`FIELDS`]; serializes as one JSON
/// object.
#[derive(Debug)]
pub struct Report(Vec<(&'static str, Section)>);

impl Report {
    /// Collects the fields for which `wanted` returns true. Fields are only
    /// read when wanted, so `probe pid` touches nothing else.
    pub fn collect(wanted: impl Fn(&str) -> bool) -> Self {
        Self(
            FIELDS
                .iter()
                .filter(|field| wanted(field.name))
                .map(|field| (field.name, (field.collect)()))
                .collect(),
        )
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, section) in &self.0 {
            map.serialize_entry(name, section)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_unique_snake_case() {
        for (i, field) in FIELDS.iter().enumerate() {
            let snake = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
            assert!(field.name.chars().all(snake), "{}", field.name);
            assert!(
                FIELDS[..i].iter().all(|other| other.name != field.name),
                "duplicate field {}",
                field.name
            );
        }
    }

    #[test]
    fn full_report_is_an_object_with_every_field_in_order() {
        let json = serde_json::to_string_pretty(&Report::collect(|_| true)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value.as_object().unwrap().len(), FIELDS.len());
        // Top-level keys are the ones indented once; they follow FIELDS.
        let positions: Vec<usize> = FIELDS
            .iter()
            .map(|field| json.find(&format!("\n  \"{}\":", field.name)).unwrap())
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(value["pid"], std::process::id());
    }

    #[test]
    fn selection_keeps_only_wanted_fields() {
        let report = Report::collect(|name| name == "uid" || name == "pid");
        let value = serde_json::to_value(&report).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 2);
        assert!(is_field("pid") && !is_field("nonsense"));
    }
}
