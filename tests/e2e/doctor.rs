//! `berth doctor`: the preflight check, as text and as JSON, on this machine.

use crate::support::Berth;

const CHECKS: [&str; 11] = [
    "kernel",
    "root",
    "cgroups",
    "overlay",
    "overlay-userns",
    "userns",
    "nft",
    "iptables",
    "ip-forward",
    "busybox",
    "mdbook",
];

#[test]
fn doctor_reports_every_check_as_text_and_json() {
    // The doctor looks at this machine's own network, so this engine runs
    // in it (it makes no container).
    let Some(b) = Berth::new(module_path!()) else {
        return;
    };
    let (code, text, err) = b.run(&["doctor"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CHECKS.len(), "{text}{err}");
    for (line, name) in lines.iter().zip(CHECKS) {
        let mut words = line.split_whitespace();
        let status = words.next().unwrap();
        assert!(["ok", "warn", "fail"].contains(&status), "{line}");
        assert_eq!(words.next(), Some(name), "{line}");
    }
    let failed = lines.iter().any(|l| l.starts_with("fail "));
    assert_eq!(code, i32::from(failed), "{text}{err}");
    let line = |name: &str| {
        *lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap()
    };
    assert!(line("kernel").starts_with("ok "), "{text}");
    assert!(line("overlay").starts_with("ok "), "{text}");
    assert!(line("root").starts_with("ok "), "{text}");

    let (json_code, json, err) = b.run(&["doctor", "--format", "json"]);
    assert_eq!(json_code, code, "{err}");
    let checks: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(names, CHECKS);
    for (c, line) in checks.iter().zip(&lines) {
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{c}");
        let status = c["status"].as_str().unwrap();
        assert!(["ok", "warn", "fail"].contains(&status), "{c}");
        assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c}");
        // A problem comes with its fix, which ends its line of text.
        assert_eq!(c["fix"].is_string(), status != "ok", "{c}");
        if let Some(fix) = c["fix"].as_str() {
            assert!(line.ends_with(&format!(": {fix}")), "{line}");
        }
    }
    assert_eq!(checks[0]["status"], "ok");
    assert_eq!(checks[3]["status"], "ok");

    // The doctor made no engine state, and its probes left nothing behind
    // (dropping `b` checks for mounts and processes).
    assert!(!b.root().exists());
    let left: Vec<_> = std::fs::read_dir(b.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let (code, _, err) = b.run(&["doctor", "--format", "yaml"]);
    assert_eq!(code, 125);
    assert!(err.contains("unknown --format"), "{err}");
}
