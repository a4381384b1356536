//! Sections read from the container's /etc: the resolver configuration, the
//! hosts file and the hostname file.

use serde::Serialize;

use crate::util::{read_text, read_trimmed};

/// The `resolver` section, from /etc/resolv.conf.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Resolver {
    pub nameservers: Vec<String>,
    /// The search domains (a `domain` line counts as a one-domain search).
    pub search: Vec<String>,
    /// The words of the `options` lines (`ndots:5`, `edns0`, ...).
    pub options: Vec<String>,
}

/// Reads /etc/resolv.conf; `None` (null) when it cannot be read.
pub fn resolver() -> Option<Resolver> {
    read_text("/etc/resolv.conf").map(|text| parse_resolv_conf(&text))
}

/// Parses resolv.conf (see resolv.conf(5)). As in the C library, the last
/// `search` or `domain` line wins and other keywords are ignored.
pub fn parse_resolv_conf(text: &str) -> Resolver {
    let mut resolver = Resolver::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let keyword = words.next();
        let rest = words.map(str::to_owned);
        match keyword {
            Some("nameserver") => resolver.nameservers.extend(rest.take(1)),
            Some("search" | "domain") => resolver.search = rest.collect(),
            Some("options") => resolver.options.extend(rest),
            // Comments (`#` or `;`), blank lines and other keywords.
            _ => {}
        }
    }
    resolver
}

/// Reads /etc/hosts: its lines, trimmed, without blank and comment lines.
pub fn hosts() -> Option<Vec<String>> {
    read_text("/etc/hosts").map(|text| parse_hosts(&text))
}

/// Keeps the meaningful lines of a hosts file, trimmed.
pub fn parse_hosts(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Reads /etc/hostname, trimmed.
pub fn hostname() -> Option<String> {
    read_trimmed("/etc/hostname")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolv_conf() {
        let text = "# generated\n\
                    nameserver 10.0.0.1\n\
                    ; another comment\n\
                    nameserver   8.8.8.8  \n\
                    domain old.example\n\
                    search example.com corp.example.com\n\
                    options ndots:5 edns0\n\
                    options timeout:2\n\
                    sortlist 130.155.160.0/255.255.240.0\n";
        assert_eq!(
            parse_resolv_conf(text),
            Resolver {
                nameservers: vec!["10.0.0.1".into(), "8.8.8.8".into()],
                search: vec!["example.com".into(), "corp.example.com".into()],
                options: vec!["ndots:5".into(), "edns0".into(), "timeout:2".into()],
            }
        );
    }

    #[test]
    fn empty_resolv_conf_is_empty() {
        assert_eq!(parse_resolv_conf(""), Resolver::default());
        assert_eq!(
            parse_resolv_conf("domain a.example\n").search,
            ["a.example"]
        );
        assert!(parse_resolv_conf("nameserver\n").nameservers.is_empty());
    }

    #[test]
    fn hosts_drops_comments_and_blanks() {
        let text = "# static\n127.0.0.1\tlocalhost\n\n  ::1 localhost ip6-localhost  \n";
        assert_eq!(
            parse_hosts(text),
            ["127.0.0.1\tlocalhost", "::1 localhost ip6-localhost"]
        );
    }
}
