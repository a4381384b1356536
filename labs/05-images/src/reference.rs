//! Step 05.1: image names.
//!
//! A reference names an image in a registry:
//! `registry/namespace/repository:tag@digest`. Most parts may be left out,
//! and Docker fills them in: no registry means Docker Hub (`docker.io`), a
//! one-part name on Docker Hub lives in `library/`, and no tag means
//! `latest`. So `busybox` is `docker.io/library/busybox:latest`, and
//! `localhost:5000/app` is the `app` repository of the registry on port
//! 5000 of this machine. The first part counts as a registry only if it
//! looks like a host name: it has a dot or a port, or it is `localhost`.
//!
//! A tag is a movable label; a digest (`@sha256:…`) names one manifest
//! forever. The parsing itself is oci-spec's; this module adds the short
//! form Docker prints and error messages that say what to fix.

use std::fmt;

use crate::{Error, Result};

/// A parsed image reference with Docker's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference(oci_spec::distribution::Reference);

impl Reference {
    /// Parses `s` the way `docker pull` does: `busybox`,
    /// `busybox:1.36`, `localhost:5000/team/app@sha256:…`.
    pub fn parse(s: &str) -> Result<Reference> {
        // BEGIN SOLUTION 05.1
        let why = if s.is_empty() {
            Some("it is empty")
        } else if s.chars().any(char::is_whitespace) {
            Some("it contains white space")
        } else if name_part(s).chars().any(|c| c.is_ascii_uppercase())
            && !name_part(s).split_once('/').is_some_and(|(host, rest)| {
                looks_like_host(host) && !rest.chars().any(|c| c.is_ascii_uppercase())
            })
        {
            Some("repository names must be lower case")
        } else {
            None
        };
        let parsed = match why {
            Some(why) => Err(why.to_string()),
            None => s
                .parse::<oci_spec::distribution::Reference>()
                .map_err(|e| e.to_string()),
        };
        parsed.map(Reference).map_err(|why| {
            Error::Invalid(format!(
                "invalid reference format {s:?}: {why} (expected [registry/][namespace/]name[:tag][@sha256:digest], e.g. busybox:latest or localhost:5000/app:1.0)"
            ))
        })
        // END SOLUTION
    }

    /// The registry host: `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// The repository inside the registry: `library/busybox`, `team/app`.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// The tag, if the reference has one (`latest` when neither a tag
    /// nor a digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest().or(self.tag()).unwrap_or("latest")
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference(oci_spec::distribution::Reference::with_tag(
            self.registry().to_string(),
            self.repository().to_string(),
            tag.to_string(),
        ))
    }

    /// The short form Docker prints: `busybox:latest`, `me/app:1`,
    /// `localhost:5000/app:1`.
    pub fn familiar(&self) -> String {
        // BEGIN SOLUTION 05.1
        let mut out = self.familiar_name();
        if let Some(tag) = self.tag() {
            out = format!("{out}:{tag}");
        }
        if let Some(digest) = self.digest() {
            out = format!("{out}@{digest}");
        }
        out
        // END SOLUTION
    }

    /// The short repository name without tag or digest (`busybox`), as in
    /// the REPOSITORY column of `docker images`.
    pub fn familiar_name(&self) -> String {
        // BEGIN SOLUTION 05.1
        if self.registry() == "docker.io" {
            self.repository()
                .strip_prefix("library/")
                .unwrap_or(self.repository())
                .to_string()
        } else {
            format!("{}/{}", self.registry(), self.repository())
        }
        // END SOLUTION
    }
}

/// The name part of a reference, without its digest and its tag: a tag
/// (after a `:` in the last `/`-separated component) may have capitals,
/// as in `busybox:Latest`.
fn name_part(s: &str) -> &str {
    let name = s.split('@').next().unwrap_or(s);
    let last = name.rfind('/').map_or(0, |slash| slash + 1);
    match name[last..].find(':') {
        Some(colon) => &name[..last + colon],
        None => name,
    }
}

/// Whether the first part of a name is a registry host.
fn looks_like_host(part: &str) -> bool {
    part.contains('.') || part.contains(':') || part == "localhost"
}

impl fmt::Display for Reference {
    /// The full form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults_fill_in_registry_namespace_and_tag() {
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            ("me/app", "docker.io/me/app:latest", "me/app:latest"),
            (
                "localhost:5000/app",
                "localhost:5000/app:latest",
                "localhost:5000/app:latest",
            ),
            ("localhost/app:v2", "localhost/app:v2", "localhost/app:v2"),
            (
                "registry.example.com/team/app:1.0",
                "registry.example.com/team/app:1.0",
                "registry.example.com/team/app:1.0",
            ),
            (
                "index.docker.io/library/alpine:3",
                "docker.io/library/alpine:3",
                "alpine:3",
            ),
        ];
        for (input, full, short) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(
                (r.to_string().as_str(), r.familiar().as_str()),
                (full, short),
                "{input}"
            );
        }
    }

    #[test]
    fn a_digest_pins_the_manifest() {
        let d = crate::digest::sha256(b"manifest");
        let r = Reference::parse(&format!("localhost:5000/app@{d}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (None, Some(d.as_str())));
        assert_eq!(r.tag_or_digest(), d);
        let r = Reference::parse(&format!("app:1@{d}")).unwrap();
        assert_eq!((r.tag(), r.tag_or_digest()), (Some("1"), d.as_str()));
        assert_eq!(r.with_tag("2").to_string(), "docker.io/library/app:2");
    }

    #[test]
    fn bad_references_say_why_and_show_the_form() {
        for (bad, why) in [
            ("", "empty"),
            ("Busybox", "lower case"),
            ("a b", "white space"),
            ("app:", "invalid reference format"),
            ("/app", "invalid reference format"),
            ("app//x", "invalid reference format"),
            ("app@sha256:abc", "digest"),
            ("app:-bad", "invalid reference format"),
        ] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("[registry/]"), "{bad}: {e}");
        }
        // A host name may have capitals; the repository may not.
        assert!(Reference::parse("Registry.Example.com/app").is_ok());
    }
}
