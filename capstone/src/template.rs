//! A small subset of Go's text/template, for `--format` as Docker has it:
//! `{{.State.Status}}`, `{{json .Config}}`, `{{.Name}} {{.Id}}`,
//! `{{join .Args " "}}`, `{{upper .Name}}`, `{{index .Config.Labels "k"}}`,
//! and the `table` prefix that adds a header row.

use anyhow::{Result, bail};
use serde_json::Value;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Action {
        func: Option<String>,
        args: Vec<Arg>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Path(Vec<String>),
    Str(String),
}

/// A parsed `--format` template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
    /// Set by a leading `table`: print a header row of the field names.
    pub table: bool,
}

fn unescape(text: &str) -> String {
    text.replace("\\t", "\t").replace("\\n", "\n")
}

fn parse_arg(token: &str, template: &str) -> Result<Arg> {
    if let Some(s) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Ok(Arg::Str(unescape(s)));
    }
    if token == "." {
        return Ok(Arg::Path(vec![]));
    }
    match token.strip_prefix('.') {
        Some(path) => Ok(Arg::Path(path.split('.').map(str::to_string).collect())),
        None => bail!(
            "template: {template:?}: unexpected {token:?} (fields start with a dot, like .Name)"
        ),
    }
}

fn tokens(action: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in action.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Template {
    /// Parses a template; errors name what is wrong and where.
    pub fn parse(src: &str) -> Result<Template> {
        let (table, body) = match src.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, src),
        };
        let mut pieces = Vec::new();
        let mut rest = body;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(unescape(&rest[..start])));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("template: {src:?}: unclosed action (missing \"}}}}\")");
            };
            let toks = tokens(after[..end].trim());
            let piece = match toks.split_first() {
                None => bail!("template: {src:?}: empty action {{{{}}}}"),
                Some((first, args)) if !first.starts_with('.') => {
                    if !["json", "join", "upper", "lower", "index", "len", "title"]
                        .contains(&first.as_str())
                    {
                        bail!(
                            "template: {src:?}: function {first:?} not defined (known: json, join, upper, lower, title, index, len)"
                        );
                    }
                    Piece::Action {
                        func: Some(first.clone()),
                        args: args
                            .iter()
                            .map(|a| parse_arg(a, src))
                            .collect::<Result<_>>()?,
                    }
                }
                Some(_) => Piece::Action {
                    func: None,
                    args: toks
                        .iter()
                        .map(|a| parse_arg(a, src))
                        .collect::<Result<_>>()?,
                },
            };
            pieces.push(piece);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(unescape(rest)));
        }
        Ok(Template { pieces, table })
    }

    /// The header row of a `table` template: each field's last name part,
    /// in capitals with spaces, as Docker prints (`.RunningFor` → `CREATED`
    /// is special-cased by the caller through `headers`).
    pub fn header(&self, headers: &dyn Fn(&str) -> String) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Action { args, .. } => match args.first() {
                    Some(Arg::Path(path)) => headers(&path.join(".")),
                    _ => String::new(),
                },
            })
            .collect()
    }

    /// Renders the template for one value.
    pub fn render(&self, value: &Value) -> Result<String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Action { func, args } => {
                    let vals: Vec<Value> = args
                        .iter()
                        .map(|a| match a {
                            Arg::Str(s) => Ok(Value::String(s.clone())),
                            Arg::Path(p) => lookup(value, p),
                        })
                        .collect::<Result<_>>()?;
                    out.push_str(&apply(func.as_deref(), &vals)?);
                }
            }
        }
        Ok(out)
    }
}

fn lookup(value: &Value, path: &[String]) -> Result<Value> {
    let mut cur = value;
    for (i, key) in path.iter().enumerate() {
        match cur {
            Value::Object(map) => match map.get(key) {
                Some(v) => cur = v,
                None => bail!(
                    "template: can't evaluate field {key} in .{}",
                    path[..i].join(".")
                ),
            },
            Value::Null => return Ok(Value::Null),
            _ => bail!(
                "template: can't evaluate field {key}: .{} is not an object",
                path[..i].join(".")
            ),
        }
    }
    Ok(cur.clone())
}

/// Prints a value the way Go's `fmt` prints it in a template.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

fn apply(func: Option<&str>, vals: &[Value]) -> Result<String> {
    let one = || vals.first().cloned().unwrap_or(Value::Null);
    Ok(match func {
        None => go_string(&one()),
        Some("json") => serde_json::to_string(&one())?,
        Some("upper") => go_string(&one()).to_uppercase(),
        Some("lower") => go_string(&one()).to_lowercase(),
        Some("title") => {
            let s = go_string(&one());
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }
        Some("len") => match one() {
            Value::Array(a) => a.len().to_string(),
            Value::Object(m) => m.len().to_string(),
            Value::String(s) => s.len().to_string(),
            _ => "0".into(),
        },
        Some("join") => match (vals.first(), vals.get(1)) {
            (Some(Value::Array(a)), Some(Value::String(sep))) => {
                a.iter().map(go_string).collect::<Vec<_>>().join(sep)
            }
            _ => bail!("template: join needs a list and a separator: {{{{join .Args \" \"}}}}"),
        },
        Some("index") => match (vals.first(), vals.get(1)) {
            (Some(Value::Object(m)), Some(Value::String(k))) => {
                m.get(k).map(go_string).unwrap_or_default()
            }
            (Some(Value::Array(a)), Some(Value::String(k))) => {
                let i: usize = k.parse()?;
                a.get(i).map(go_string).unwrap_or_default()
            }
            _ => bail!("template: index needs a map and a key: {{{{index .Config.Labels \"k\"}}}}"),
        },
        Some(other) => bail!("template: unknown function {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> Result<String> {
        Template::parse(t)?.render(v)
    }

    #[test]
    fn fields_functions_and_text() {
        let v = json!({"Name": "/web", "State": {"Status": "running", "Pid": 42, "Running": true},
                       "Args": ["-c", "echo hi"], "Config": {"Labels": {"tier": "front"}, "Env": null}});
        assert_eq!(render("{{.State.Status}}", &v).unwrap(), "running");
        assert_eq!(
            render("pid={{.State.Pid}} up={{.State.Running}}", &v).unwrap(),
            "pid=42 up=true"
        );
        assert_eq!(
            render("{{json .State}}", &v).unwrap(),
            r#"{"Pid":42,"Running":true,"Status":"running"}"#
        );
        assert_eq!(render("{{join .Args \",\"}}", &v).unwrap(), "-c,echo hi");
        assert_eq!(render("{{.Args}}", &v).unwrap(), "[-c echo hi]");
        assert_eq!(
            render("{{index .Config.Labels \"tier\"}}", &v).unwrap(),
            "front"
        );
        assert_eq!(
            render("{{upper .Name}}\\t{{len .Args}}", &v).unwrap(),
            "/WEB\t2"
        );
        assert_eq!(render("{{.Config.Env}}", &v).unwrap(), "<no value>");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let v = json!({"State": {"Status": "running"}});
        assert!(
            render("{{.State.Nope}}", &v)
                .unwrap_err()
                .to_string()
                .contains("can't evaluate field Nope")
        );
        assert!(
            render("{{.State.Status", &v)
                .unwrap_err()
                .to_string()
                .contains("unclosed")
        );
        assert!(
            render("{{frob .State}}", &v)
                .unwrap_err()
                .to_string()
                .contains("not defined")
        );
        assert!(render("{{State}}", &v).is_err());
    }

    #[test]
    fn tables_have_headers() {
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        assert!(t.table);
        assert_eq!(t.header(&|f| f.to_uppercase()), "ID\tNAMES");
    }
}
