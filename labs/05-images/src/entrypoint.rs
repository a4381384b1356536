//! Step 05.7: what a container runs.
//!
//! An image config stores two arrays of strings. `Entrypoint` is the program
//! and its fixed arguments; `Cmd` is the default arguments that follow it,
//! or, when there is no entrypoint, the whole command. A container runs
//! Entrypoint followed by Cmd. So an image built with
//! `ENTRYPOINT ["curl"]` and `CMD ["--help"]` runs `curl --help`, and
//! `berth run IMAGE https://example.com` runs `curl https://example.com`:
//! arguments after the image name replace Cmd and keep Entrypoint.
//!
//! **Two forms.** `CMD ["echo", "hi"]`, the exec form, is stored as written.
//! `CMD echo $HOME`, the shell form, is stored as `["/bin/sh", "-c",
//! "echo $HOME"]`, or with the shell a `SHELL` instruction chose: the shell
//! is what expands `$HOME`, runs pipes and `&&`. A shell-form ENTRYPOINT
//! swallows Cmd and the `run` arguments: they follow the command string,
//! where `sh -c` reads them as `$0`, `$1`... and the string ignores them.
//!
//! **Why the exec form gets signals.** `berth stop`, like `docker stop`,
//! sends SIGTERM (or the image's STOPSIGNAL) to the container's PID 1,
//! waits ten seconds, then sends SIGKILL. The kernel protects a namespace's
//! PID 1: a signal it has no handler for is dropped instead of killing it.
//! With the shell form, PID 1 is `/bin/sh`, which installs no SIGTERM
//! handler and passes nothing on to its child, so the program never hears
//! the request: it gets no chance to finish its work and is killed ten
//! seconds later. (Some shells replace themselves with a lone simple
//! command, but a pipe or `&&` keeps the shell in place; don't rely on it.)
//! With the exec form the program itself is PID 1 and receives SIGTERM. It
//! must handle it, since the default action does not apply to PID 1; for
//! one that doesn't, `--init` puts a small init process in front.
//!
//! **During a build** ([`ImageCommand`]): each stage starts with its base
//! image's Entrypoint and Cmd. Setting ENTRYPOINT clears a Cmd inherited
//! from the base, which was meant as arguments for a different program,
//! but not a CMD written in this stage, before or after the ENTRYPOINT.
//! This is BuildKit's rule, and the Dockerfile reference says it too.
//!
//! **At run time** ([`command`]): arguments replace Cmd; `--entrypoint`
//! replaces Entrypoint and drops the image's Cmd as well, and
//! `--entrypoint ""` removes Entrypoint. With neither an entrypoint nor a
//! command left, there is nothing to run: "no command specified".

use crate::dockerfile::{Form, Kind};
use crate::error::{Error, Result};

/// The shell that runs shell forms when no SHELL instruction chose another.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The array an image config stores for a CMD or ENTRYPOINT written in
/// `form`: the exec form as it is, the shell form as `shell` followed by
/// the command string. An empty `shell` means [`DEFAULT_SHELL`].
pub fn config_command(form: &Form, shell: &[String]) -> Vec<String> {
    // BEGIN SOLUTION 05.7
    match form {
        Form::Exec(args) => args.clone(),
        Form::Shell(command) => {
            let mut out: Vec<String> = if shell.is_empty() {
                DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
            } else {
                shell.to_vec()
            };
            out.push(command.clone());
            out
        }
    }
    // END SOLUTION
}

/// An image's Entrypoint, Cmd and Shell as one build stage changes them.
/// Empty means unset (an empty shell is [`DEFAULT_SHELL`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageCommand {
    /// The config's `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The config's `Cmd`.
    pub cmd: Vec<String>,
    /// The shell for shell forms, as SHELL set it.
    pub shell: Vec<String>,
    /// Whether this stage has written a CMD (one from the base image does
    /// not count).
    cmd_set: bool,
}

impl ImageCommand {
    /// The values a stage starts with: its base image's. (`FROM scratch`
    /// has none: [`ImageCommand::default`].)
    pub fn inherit(entrypoint: Vec<String>, cmd: Vec<String>, shell: Vec<String>) -> ImageCommand {
        ImageCommand {
            entrypoint,
            cmd,
            shell,
            cmd_set: false,
        }
    }

    /// `SHELL [...]`: the shell for the shell forms that follow.
    pub fn set_shell(&mut self, shell: &[String]) {
        self.shell = shell.to_vec();
    }

    /// `CMD`: replaces Cmd, and marks it as this stage's own.
    pub fn set_cmd(&mut self, form: &Form) {
        self.cmd = config_command(form, &self.shell);
        self.cmd_set = true;
    }

    /// `ENTRYPOINT`: replaces Entrypoint, and clears a Cmd that came from
    /// the base image, since those arguments were for the old entrypoint.
    /// A CMD set earlier in this stage stays.
    pub fn set_entrypoint(&mut self, form: &Form) {
        // BEGIN SOLUTION 05.7
        self.entrypoint = config_command(form, &self.shell);
        if !self.cmd_set {
            self.cmd.clear();
        }
        // END SOLUTION
    }

    /// Applies a CMD, ENTRYPOINT or SHELL instruction; returns false, and
    /// changes nothing, for any other instruction.
    pub fn apply(&mut self, kind: &Kind) -> bool {
        match kind {
            Kind::Cmd(form) => self.set_cmd(form),
            Kind::Entrypoint(form) => self.set_entrypoint(form),
            Kind::Shell(shell) => self.set_shell(shell),
            _ => return false,
        }
        true
    }
}

/// The command a container of an image runs, for `berth run IMAGE [ARGS...]`:
/// Entrypoint followed by Cmd, where `run_args`, if any, replace the image's
/// Cmd. `entrypoint_override` is `--entrypoint`: it replaces the image's
/// Entrypoint and drops its Cmd too, as Docker does; an empty one (`[]` or
/// `[""]`, from `--entrypoint ""`) leaves no entrypoint at all.
pub fn command(
    image_entrypoint: &[String],
    image_cmd: &[String],
    run_args: &[String],
    entrypoint_override: Option<&[String]>,
) -> Result<Vec<String>> {
    // BEGIN SOLUTION 05.7
    let (entrypoint, cmd) = match entrypoint_override {
        None if run_args.is_empty() => (image_entrypoint, image_cmd),
        None => (image_entrypoint, run_args),
        Some([]) => (&[][..], run_args),
        Some([only]) if only.is_empty() => (&[][..], run_args),
        Some(entrypoint) => (entrypoint, run_args),
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        let why = if entrypoint_override.is_some() {
            "--entrypoint \"\" removed the image's ENTRYPOINT, and an --entrypoint also drops \
             the image's CMD"
        } else {
            "the image has neither ENTRYPOINT nor CMD"
        };
        return Err(Error::Invalid(format!(
            "no command specified: {why}; give the command after the image name, as in \
             berth run IMAGE sh"
        )));
    }
    Ok(entrypoint.iter().chain(cmd).cloned().collect())
    // END SOLUTION
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Dockerfile;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// The Entrypoint and Cmd of `FROM scratch` followed by `lines`, as
    /// the build engine would store them.
    fn build(lines: &[&str]) -> ImageCommand {
        let text = format!("FROM scratch\n{}\n", lines.join("\n"));
        let df = Dockerfile::parse("Dockerfile", &text).unwrap();
        let mut image = ImageCommand::default();
        for instruction in &df.stages[0].instructions {
            assert!(image.apply(&instruction.kind), "{}", instruction.original);
        }
        image
    }

    #[test]
    fn forms_as_the_config_stores_them() {
        let shell = Form::Shell("echo $HOME && ls".into());
        assert_eq!(
            config_command(&shell, &[]),
            v(&["/bin/sh", "-c", "echo $HOME && ls"])
        );
        assert_eq!(
            config_command(&shell, &v(&["/bin/bash", "-o", "pipefail", "-c"])),
            v(&["/bin/bash", "-o", "pipefail", "-c", "echo $HOME && ls"])
        );
        let exec = Form::Exec(v(&["echo", "$HOME"]));
        assert_eq!(
            config_command(&exec, &v(&["/bin/bash", "-c"])),
            v(&["echo", "$HOME"])
        );
    }

    /// Docker's table of how ENTRYPOINT and CMD combine, from the
    /// Dockerfile reference, with the arrays a container really gets. Under
    /// a shell-form ENTRYPOINT, Cmd still follows, but `sh -c` reads it as
    /// `$0`, `$1`...; the reference's table shows only the part that runs.
    #[test]
    fn docker_entrypoint_cmd_table() {
        let columns = [
            "",
            "ENTRYPOINT exec_entry p1_entry",
            r#"ENTRYPOINT ["exec_entry", "p1_entry"]"#,
        ];
        type Row<'a> = (&'a str, [Option<Vec<String>>; 3]);
        let rows: [Row; 4] = [
            (
                "",
                [
                    None,
                    Some(v(&["/bin/sh", "-c", "exec_entry p1_entry"])),
                    Some(v(&["exec_entry", "p1_entry"])),
                ],
            ),
            (
                r#"CMD ["exec_cmd", "p1_cmd"]"#,
                [
                    Some(v(&["exec_cmd", "p1_cmd"])),
                    Some(v(&[
                        "/bin/sh",
                        "-c",
                        "exec_entry p1_entry",
                        "exec_cmd",
                        "p1_cmd",
                    ])),
                    Some(v(&["exec_entry", "p1_entry", "exec_cmd", "p1_cmd"])),
                ],
            ),
            (
                r#"CMD ["p1_cmd", "p2_cmd"]"#,
                [
                    Some(v(&["p1_cmd", "p2_cmd"])),
                    Some(v(&[
                        "/bin/sh",
                        "-c",
                        "exec_entry p1_entry",
                        "p1_cmd",
                        "p2_cmd",
                    ])),
                    Some(v(&["exec_entry", "p1_entry", "p1_cmd", "p2_cmd"])),
                ],
            ),
            (
                "CMD exec_cmd p1_cmd",
                [
                    Some(v(&["/bin/sh", "-c", "exec_cmd p1_cmd"])),
                    Some(v(&[
                        "/bin/sh",
                        "-c",
                        "exec_entry p1_entry",
                        "/bin/sh",
                        "-c",
                        "exec_cmd p1_cmd",
                    ])),
                    Some(v(&[
                        "exec_entry",
                        "p1_entry",
                        "/bin/sh",
                        "-c",
                        "exec_cmd p1_cmd",
                    ])),
                ],
            ),
        ];
        for (cmd, expected) in &rows {
            for (entrypoint, want) in columns.iter().zip(expected) {
                // Both orders give the same image: a CMD of this stage
                // survives the ENTRYPOINT, before it or after it.
                for lines in [[*cmd, *entrypoint], [*entrypoint, *cmd]] {
                    let image = build(&lines);
                    let got = command(&image.entrypoint, &image.cmd, &[], None);
                    match (want, got) {
                        (Some(want), Ok(got)) => assert_eq!(&got, want, "{lines:?}"),
                        (None, Err(e)) => assert_eq!(
                            e.to_string(),
                            "no command specified: the image has neither ENTRYPOINT nor CMD; \
                             give the command after the image name, as in berth run IMAGE sh"
                        ),
                        (want, got) => panic!("{lines:?}: want {want:?}, got {got:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn entrypoint_clears_only_an_inherited_cmd() {
        let alpine = || ImageCommand::inherit(vec![], v(&["/bin/sh"]), vec![]);
        let app = Form::Exec(v(&["/app"]));
        let help = Form::Exec(v(&["--help"]));

        // FROM alpine + ENTRYPOINT: alpine's CMD ["/bin/sh"] would otherwise
        // become an argument to /app.
        let mut image = alpine();
        image.set_entrypoint(&app);
        assert_eq!(
            (image.entrypoint.clone(), image.cmd.clone()),
            (v(&["/app"]), v(&[]))
        );
        assert_eq!(
            command(&image.entrypoint, &image.cmd, &[], None).unwrap(),
            v(&["/app"])
        );

        // A CMD of this stage stays, whether before or after the ENTRYPOINT.
        let mut image = alpine();
        image.set_cmd(&help);
        image.set_entrypoint(&app);
        assert_eq!(image.cmd, v(&["--help"]));
        let mut image = alpine();
        image.set_entrypoint(&app);
        image.set_cmd(&help);
        assert_eq!(image.cmd, v(&["--help"]));

        // A second ENTRYPOINT keeps this stage's CMD too.
        image.set_entrypoint(&Form::Exec(v(&["/other"])));
        assert_eq!(image.cmd, v(&["--help"]));

        // ENTRYPOINT [] clears the entrypoint, and the inherited CMD with it.
        let mut image = ImageCommand::inherit(v(&["/docker-entrypoint.sh"]), v(&["nginx"]), vec![]);
        image.set_entrypoint(&Form::Exec(vec![]));
        assert_eq!(image, ImageCommand::default());

        // A stage built on an earlier stage inherits its CMD like any base.
        let first = build(&["CMD [\"serve\"]"]);
        let mut second = ImageCommand::inherit(first.entrypoint, first.cmd, first.shell);
        second.set_entrypoint(&app);
        assert!(second.cmd.is_empty());
    }

    #[test]
    fn shell_applies_to_later_shell_forms() {
        let image = build(&[
            "ENTRYPOINT start",
            r#"SHELL ["/bin/bash", "-o", "pipefail", "-c"]"#,
            "CMD serve | tee log",
        ]);
        assert_eq!(image.entrypoint, v(&["/bin/sh", "-c", "start"]));
        assert_eq!(
            image.cmd,
            v(&["/bin/bash", "-o", "pipefail", "-c", "serve | tee log"])
        );
        // An inherited shell is used until a SHELL replaces it.
        let mut image = ImageCommand::inherit(vec![], vec![], v(&["/bin/ash", "-c"]));
        image.set_cmd(&Form::Shell("x".into()));
        assert_eq!(image.cmd, v(&["/bin/ash", "-c", "x"]));
        // Other instructions are not ours.
        assert!(!image.apply(&Kind::User(crate::dockerfile::Word::new(
            "app",
            crate::dockerfile::Pos { line: 1, column: 1 }
        ))));
    }

    #[test]
    fn run_time_overrides() {
        /// (image ENTRYPOINT, image CMD, run arguments, --entrypoint, command)
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            Option<&'a [&'a str]>,
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            // Arguments replace CMD.
            (&[], &["sh"], &[], None, &["sh"]),
            (&[], &["sh"], &["echo", "hi"], None, &["echo", "hi"]),
            (&[], &[], &["ls"], None, &["ls"]),
            // ... and go after ENTRYPOINT.
            (&["/app"], &["--help"], &[], None, &["/app", "--help"]),
            (&["/app"], &["--help"], &["-v"], None, &["/app", "-v"]),
            (&["/app"], &[], &[], None, &["/app"]),
            // --entrypoint replaces ENTRYPOINT and drops the image's CMD.
            (&["/app"], &["--help"], &[], Some(&["/other"]), &["/other"]),
            (
                &["/app"],
                &["--help"],
                &["x"],
                Some(&["/other"]),
                &["/other", "x"],
            ),
            (&[], &["sh"], &[], Some(&["/bin/ls"]), &["/bin/ls"]),
            // --entrypoint "" removes ENTRYPOINT.
            (&["/app"], &["--help"], &["sh"], Some(&[]), &["sh"]),
            (
                &["/app"],
                &["--help"],
                &["sh", "-c", "id"],
                Some(&[""]),
                &["sh", "-c", "id"],
            ),
        ];
        for &(entrypoint, cmd, args, flag, want) in cases {
            let flag = flag.map(v);
            let got = command(&v(entrypoint), &v(cmd), &v(args), flag.as_deref());
            assert_eq!(
                got.unwrap(),
                v(want),
                "{entrypoint:?} {cmd:?} {args:?} {flag:?}"
            );
        }
    }

    #[test]
    fn nothing_to_run() {
        let none = command(&[], &[], &[], None).unwrap_err();
        assert_eq!(
            none.to_string(),
            "no command specified: the image has neither ENTRYPOINT nor CMD; give the command \
             after the image name, as in berth run IMAGE sh"
        );
        // --entrypoint "" with no arguments: the image's CMD is gone too.
        let reset = command(&v(&["/app"]), &v(&["--help"]), &[], Some(&v(&[""]))).unwrap_err();
        assert_eq!(
            reset.to_string(),
            "no command specified: --entrypoint \"\" removed the image's ENTRYPOINT, and an \
             --entrypoint also drops the image's CMD; give the command after the image name, \
             as in berth run IMAGE sh"
        );
    }
}
