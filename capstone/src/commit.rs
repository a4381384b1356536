//! `berth diff` and `berth commit` (lab 03): what a container changed, and
//! a new image whose top layer is exactly that change.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use oci_spec::image::Config;

use crate::image::{ImageStore, Reference};
use crate::state::{Container, Status, Store};
use crate::storage::{self, Driver};

/// What the container added, changed and deleted, as `docker diff` lists
/// it: `A /new`, `C /etc`, `D /gone`.
pub fn changes(store: &Store, c: &Container) -> Result<Vec<overlay::diff::Change>> {
    let images = ImageStore::open(&store.root)?;
    let lowers = storage::lowers(&images, &c.storage, &store.container_dir(&c.id))?;
    let p = storage::paths(&store.container_dir(&c.id));
    let xattr = c.storage.xattr();
    Ok(match c.storage.driver {
        Driver::Overlay => overlay::diff::changes(&p.upper, &lowers, xattr)?,
        Driver::Vfs => {
            // The copy's owners went through the container's id maps.
            let (uids, gids) = crate::container::id_maps(&c.options)?;
            let shift = |u, g| {
                (
                    crate::container::to_host(&uids, u),
                    crate::container::to_host(&gids, g),
                )
            };
            overlay::diff::changes_between(&lowers, xattr, &p.rootfs, &shift)?
        }
    })
}

/// The container's writable layer as an OCI layer tarball.
fn layer(store: &Store, c: &Container) -> Result<Vec<u8>> {
    layer_with(store, c, None)
}

/// The same, with every modification time set to `mtime` if given
/// (`SOURCE_DATE_EPOCH`, for builds that give the same digests each time).
pub fn layer_with(store: &Store, c: &Container, mtime: Option<u64>) -> Result<Vec<u8>> {
    let p = storage::paths(&store.container_dir(&c.id));
    let options = overlay::layer::TarOptions { mtime };
    Ok(match c.storage.driver {
        Driver::Overlay => overlay::layer::tar_upper(&p.upper, &options, c.storage.xattr())?,
        Driver::Vfs => overlay::layer::tar_dir(&p.rootfs, &changes(store, c)?, &options)?,
    })
}

/// What `berth commit` was asked for.
#[derive(Debug, Default)]
pub struct CommitRequest {
    pub reference: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    pub changes: Vec<String>,
    pub pause: bool,
}

// ANCHOR: commit
/// Makes a new image from a container: its image's layers plus one more,
/// the container's writable layer; its configuration carried forward from
/// how the container was run, then edited by `--change` instructions. A
/// running container is frozen while its layer is read, so the layer is one
/// consistent moment.
pub fn commit(store: &Store, key: &str, req: &CommitRequest) -> Result<String> {
    let c = store.find(key)?;
    let reference = req.reference.as_deref().map(Reference::parse).transpose()?;
    let mut config = carried_config(store, &c)?;
    for change in &req.changes {
        apply_change(&mut config, change)?;
    }
    let freeze = req.pause && c.state.status == Status::Running && !c.options.rootless;
    if freeze {
        crate::ops::pause(store, &c.id)?;
    }
    let tar = layer(store, &c);
    if freeze {
        crate::ops::unpause(store, &c.id)?;
    }
    let tar = tar.with_context(|| format!("cannot read the writable layer of {}", c.name))?;
    let images = ImageStore::open(&store.root)?;
    let base = images
        .find(&c.image_id)?
        .with_context(|| format!("the image of {} ({}) is gone", c.name, c.image_id))?;
    // As Docker records it: the container's command made the layer; the
    // message is the comment.
    let created_by = std::iter::once(c.path.as_str())
        .chain(c.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let image = images.add_layer(
        &base,
        &tar,
        config,
        crate::image::LayerInfo {
            created_by,
            author: req.author.clone(),
            comment: req.message.clone(),
            xattr: c.storage.xattr(),
            healthcheck: None,
        },
        reference.as_ref(),
    )?;
    Ok(image.id)
}
// ANCHOR_END: commit

/// The image configuration as the container ran: environment, command,
/// working directory and user from the run, the rest from its image.
fn carried_config(store: &Store, c: &Container) -> Result<Config> {
    let images = ImageStore::open(&store.root)?;
    let base = images
        .find(&c.image_id)?
        .with_context(|| format!("the image of {} ({}) is gone", c.name, c.image_id))?;
    let mut config = base.config.config().clone().unwrap_or_default();
    // The engine's own variables are set again at each start.
    let env: Vec<String> = c
        .env
        .iter()
        .filter(|e| {
            let engine_set =
                e.starts_with("HOSTNAME=") || (c.options.tty && e.starts_with("TERM="));
            !engine_set
        })
        .cloned()
        .collect();
    config.set_env(Some(env));
    let entrypoint = match &c.options.entrypoint {
        Some(e) => e.clone(),
        None => config.entrypoint().clone().unwrap_or_default(),
    };
    let mut full = vec![c.path.clone()];
    full.extend(c.args.iter().cloned());
    let cmd = match full.strip_prefix(entrypoint.as_slice()) {
        Some(rest) if !entrypoint.is_empty() => rest.to_vec(),
        _ => full,
    };
    config.set_entrypoint((!entrypoint.is_empty()).then_some(entrypoint));
    config.set_cmd(Some(cmd));
    if !c.options.workdir.is_empty() {
        config.set_working_dir(Some(c.options.workdir.clone()));
    }
    if !c.options.user.is_empty() {
        config.set_user(Some(c.options.user.clone()));
    }
    Ok(config)
}

// ANCHOR: change
/// Applies one Dockerfile instruction of `--change` to an image config.
/// Docker accepts CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER,
/// VOLUME and WORKDIR here; berth takes all but ONBUILD.
pub fn apply_change(config: &mut Config, change: &str) -> Result<()> {
    let change = change.trim();
    let (word, rest) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let rest = rest.trim();
    let list = || -> Result<Vec<String>> {
        if rest.starts_with('[') {
            serde_json::from_str(rest).with_context(|| {
                format!("{word}: {rest} is not a JSON array of strings, e.g. [\"sh\", \"-c\", \"echo hi\"]")
            })
        } else {
            Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
        }
    };
    let pairs = || -> Result<Vec<(String, String)>> {
        if !rest.contains('=') {
            // The old form: `ENV NAME value with spaces`.
            let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return Ok(vec![(k.to_string(), v.trim().to_string())]);
        }
        shell_words(rest)?
            .into_iter()
            .map(|w| {
                w.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("{word}: {w:?} is not NAME=value"))
            })
            .collect()
    };
    if rest.is_empty() {
        bail!("--change {word:?} needs an argument, e.g. --change 'CMD [\"sh\"]'");
    }
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.set_cmd(Some(list()?));
        }
        "ENTRYPOINT" => {
            config.set_entrypoint(Some(list()?));
        }
        "WORKDIR" => {
            config.set_working_dir(Some(rest.to_string()));
        }
        "USER" => {
            config.set_user(Some(rest.to_string()));
        }
        "ENV" => {
            let mut env = config.env().clone().unwrap_or_default();
            for (k, v) in pairs()? {
                env.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            config.set_env(Some(env));
        }
        "LABEL" => {
            let mut labels: HashMap<String, String> = config.labels().clone().unwrap_or_default();
            labels.extend(pairs()?);
            config.set_labels(Some(labels));
        }
        "EXPOSE" => {
            let mut ports = config.exposed_ports().clone().unwrap_or_default();
            for p in rest.split_whitespace() {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if num.parse::<u16>().is_err() || !["tcp", "udp", "sctp"].contains(&proto) {
                    bail!("EXPOSE: invalid port {p:?} (expected PORT or PORT/tcp|udp)");
                }
                let port = format!("{num}/{proto}");
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            config.set_exposed_ports(Some(ports));
        }
        "VOLUME" => {
            let paths: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest)
                    .with_context(|| format!("VOLUME: {rest} is not a JSON array of paths"))?
            } else {
                rest.split_whitespace().map(str::to_string).collect()
            };
            let mut volumes = config.volumes().clone().unwrap_or_default();
            for p in paths {
                if !p.starts_with('/') {
                    bail!("VOLUME: {p:?} is not an absolute path");
                }
                if !volumes.contains(&p) {
                    volumes.push(p);
                }
            }
            config.set_volumes(Some(volumes));
        }
        "ONBUILD" => bail!("--change ONBUILD is not supported by berth"),
        other => bail!(
            "--change {other:?} is not an instruction commit can apply: use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME or WORKDIR"
        ),
    }
    Ok(())
}
// ANCHOR_END: change

/// Splits `A=1 B="two words"` into words, honouring double quotes.
fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in s.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("unterminated quote in {s:?}");
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

/// A fresh config builder, for tests.
#[cfg(test)]
fn empty() -> Config {
    oci_spec::image::ConfigBuilder::default().build().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_edit_the_config() {
        let mut c = empty();
        for change in [
            "CMD [\"httpd\", \"-f\"]",
            "ENTRYPOINT /bin/run me",
            "ENV A=1 B=\"two words\"",
            "ENV OLD style value",
            "ENV A=3",
            "EXPOSE 80 53/udp",
            "LABEL team=web",
            "USER nobody",
            "VOLUME /data",
            "WORKDIR /srv",
        ] {
            apply_change(&mut c, change).unwrap();
        }
        assert_eq!(c.cmd().clone().unwrap(), vec!["httpd", "-f"]);
        assert_eq!(
            c.entrypoint().clone().unwrap(),
            vec!["/bin/sh", "-c", "/bin/run me"]
        );
        assert_eq!(
            c.env().clone().unwrap(),
            vec!["B=two words", "OLD=style value", "A=3"]
        );
        assert_eq!(c.exposed_ports().clone().unwrap(), vec!["80/tcp", "53/udp"]);
        assert_eq!(c.labels().clone().unwrap()["team"], "web");
        assert_eq!(c.user().as_deref(), Some("nobody"));
        assert_eq!(c.volumes().clone().unwrap(), vec!["/data"]);
        assert_eq!(c.working_dir().as_deref(), Some("/srv"));
    }

    #[test]
    fn bad_changes_say_what_is_wrong() {
        let mut c = empty();
        let err = |s: &str, c: &mut Config| format!("{:#}", apply_change(c, s).unwrap_err());
        assert!(err("RUN echo", &mut c).contains("not an instruction commit can apply"));
        assert!(err("CMD [\"sh\"", &mut c).contains("not a JSON array"));
        assert!(err("EXPOSE http", &mut c).contains("invalid port"));
        assert!(err("VOLUME data", &mut c).contains("not an absolute path"));
        assert!(err("CMD", &mut c).contains("needs an argument"));
        assert!(err("ENV A=\"x", &mut c).contains("unterminated quote"));
    }
}
