//! docker's `--format`, one implementation for every command: Go
//! text/template (parse.rs: the syntax; exec.rs: running it over the JSON
//! object docker would template; printf.rs: fmt's verbs), and the list
//! forms docker's formatter has: `json` (one object per line), `table`
//! (the command's default columns), `table TEMPLATE` (with a header row
//! naming the fields) and a bare TEMPLATE (one line per object). `\t` and
//! `\n` typed literally become a tab and a newline, as in docker.

mod exec;
mod parse;
mod printf;

use std::io::Write;

use anyhow::{anyhow, Result};
use serde_json::Value;

/// A parsed template.
pub struct Template {
    text: String,
    nodes: Vec<parse::Node>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template> {
        let unescaped = text.replace("\\t", "\t").replace("\\n", "\n");
        let nodes = parse::parse(&unescaped)
            .map_err(|e| anyhow!("invalid --format {text:?}: {}", one_line(&e)))?;
        Ok(Template {
            text: text.to_string(),
            nodes,
        })
    }

    pub fn render(&self, v: &Value) -> Result<String> {
        let mut out = String::new();
        exec::run(&self.nodes, v, &mut out)
            .map_err(|e| anyhow!("executing --format {:?}: {}", self.text, one_line(&e)))?;
        Ok(out)
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.to_string().replace('\n', " ")
}

/// Render `tmpl` over `v`.
pub fn render(tmpl: &str, v: &Value) -> Result<String> {
    Template::parse(tmpl)?.render(v)
}

/// Print `objects` as `--format` asks (None: the `table` of `default_row`).
/// `headers` names columns whose title is not the field's name upper-cased
/// ("ID" → "CONTAINER ID").
pub fn print_list(
    out: &mut impl Write,
    format: Option<&str>,
    default_row: &str,
    headers: &[(&str, &str)],
    objects: &[Value],
) -> Result<()> {
    let res = list(out, format, default_row, headers, objects);
    if let Err(e) = &res {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        {
            crate::output::end_by_sigpipe();
        }
    }
    res
}

fn list(
    out: &mut impl Write,
    format: Option<&str>,
    default_row: &str,
    headers: &[(&str, &str)],
    objects: &[Value],
) -> Result<()> {
    let format = format.unwrap_or("table");
    if format == "json" {
        for o in objects {
            writeln!(out, "{}", serde_json::to_string(o)?)?;
        }
        return Ok(());
    }
    let Some(row) = format.strip_prefix("table") else {
        let t = Template::parse(format)?;
        for o in objects {
            writeln!(out, "{}", t.render(o)?)?;
        }
        return Ok(());
    };
    let row = match row.trim_start() {
        "" => default_row,
        r => r,
    };
    let t = Template::parse(row)?;
    let mut rows = vec![header(&t, row, headers, objects)];
    for o in objects {
        rows.push(t.render(o)?);
    }
    write_table(out, &rows)
}

/// The header row: the template run over an object whose fields are their
/// column titles, as docker's formatter does.
fn header(t: &Template, row: &str, headers: &[(&str, &str)], objects: &[Value]) -> String {
    let mut titles = serde_json::Map::new();
    let mut name = |k: &str| {
        let title = headers
            .iter()
            .find(|(f, _)| *f == k)
            .map(|(_, h)| h.to_string())
            .unwrap_or_else(|| words(k).to_uppercase());
        titles.insert(k.to_string(), Value::from(title));
    };
    for o in objects.iter().take(1) {
        if let Value::Object(m) = o {
            m.keys().for_each(|k| name(k));
        }
    }
    // Fields the template names (also with no objects to list).
    for field in row.split('.').skip(1) {
        let f: String = field
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !f.is_empty() {
            name(&f);
        }
    }
    t.render(&Value::Object(titles)).unwrap_or_default()
}

/// "RunningFor" → "Running For", "CPUPerc" → "CPU Perc".
fn words(k: &str) -> String {
    let c: Vec<char> = k.chars().collect();
    let mut out = String::new();
    for i in 0..c.len() {
        let boundary = i > 0
            && c[i].is_uppercase()
            && (c[i - 1].is_lowercase()
                || c.get(i + 1).is_some_and(|n| n.is_lowercase()) && c[i - 1].is_uppercase());
        if boundary {
            out.push(' ');
        }
        out.push(c[i]);
    }
    out
}

/// Tab-separated rows as aligned columns, as docker's tabwriter (cells
/// padded by 3, at least 10 wide).
pub fn write_table(out: &mut impl Write, rows: &[String]) -> Result<()> {
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let cols = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in &cells {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat((widths[i] + 3).max(10) - c.chars().count()));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        render(t, v).unwrap()
    }

    #[test]
    fn fields_json_and_escapes() {
        let v = json!({"Name": "db", "Labels": {"a": "1"}, "Size": 3, "Options": null});
        assert_eq!(r("{{ .Name }}\\t{{.Size}}", &v), "db\t3");
        assert_eq!(r("{{.Labels.a}} {{json .Labels}}", &v), "1 {\"a\":\"1\"}");
        assert_eq!(r("{{.Labels}}", &v), "map[a:1]");
        assert_eq!(r("{{.Options}}|{{.Nope}}", &v), "<no value>|<no value>");
        assert_eq!(r("{{json .}}", &json!([1])), "[1]");
        assert!(render("{{.Name", &v).is_err());
        assert!(render("{{range .Labels}}", &v).is_err());
        assert!(render("{{.Name \"x\"}}", &v).is_err());
    }

    // The examples of the text/template documentation and docker's
    // "Format command and log output" page.
    #[test]
    fn go_and_docker_examples() {
        let v = json!({
            "Names": ["a", "b"], "Name": "web", "Count": 2, "Empty": "",
            "Labels": {"com.example.x": "1", "b": "2"},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.0.0.2"}}},
            "Config": {"Env": ["A=1", "B=2"]},
        });
        assert_eq!(r("{{range .Names}}[{{.}}]{{end}}", &v), "[a][b]");
        assert_eq!(
            r("{{range $i, $n := .Names}}{{$i}}={{$n}} {{end}}", &v),
            "0=a 1=b "
        );
        assert_eq!(r("{{range .Nope}}x{{else}}none{{end}}", &v), "none");
        assert_eq!(
            r("{{range $k, $v := .Labels}}{{$k}}:{{$v}};{{end}}", &v),
            "b:2;com.example.x:1;"
        );
        assert_eq!(
            r(
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &v
            ),
            "10.0.0.2"
        );
        assert_eq!(r("{{index .Labels \"com.example.x\"}}", &v), "1");
        assert_eq!(r("{{index .Names 1}}", &v), "b");
        assert_eq!(
            r("{{if .Empty}}y{{else if .Count}}c{{else}}n{{end}}", &v),
            "c"
        );
        assert_eq!(r("{{if eq .Count 2 3}}two{{end}}", &v), "two");
        assert_eq!(r("{{if and .Name (gt .Count 1)}}ok{{end}}", &v), "ok");
        assert_eq!(r("{{if not .Empty}}empty{{end}}", &v), "empty");
        assert_eq!(r("{{with .Labels.b}}b={{.}}{{end}}", &v), "b=2");
        assert_eq!(r("{{with .Nope}}x{{else}}no{{end}}", &v), "no");
        assert_eq!(r("{{len .Names}} {{len .Name}}", &v), "2 3");
        assert_eq!(r("{{join .Names \", \"}}", &v), "a, b");
        assert_eq!(r("{{join .Config.Env \",\"}}", &v), "A=1,B=2");
        assert_eq!(r("{{split \"a:b\" \":\"}}", &v), "[a b]");
        assert_eq!(
            r("{{upper .Name}} {{lower \"AB\"}} {{title \"ab cd\"}}", &v),
            "WEB ab Ab Cd"
        );
        assert_eq!(r("{{.Name | upper | printf \"%s!\"}}", &v), "WEB!");
        assert_eq!(
            r("{{printf \"%-5s|%3d|%.2f|%q\" .Name .Count 1.5 \"x\"}}", &v),
            "web  |  2|1.50|\"x\""
        );
        assert_eq!(
            r("{{$n := .Name}}{{range .Names}}{{$n}}{{.}} {{end}}", &v),
            "weba webb "
        );
        assert_eq!(r("{{(index .Names 0) | upper}}", &v), "A");
        assert_eq!(r("{{json .Names}}", &v), "[\"a\",\"b\"]");
        assert_eq!(r("{{print \"a\" 1 2 \"b\"}}", &v), "a1 2b");
        assert_eq!(r("a {{- \" b \" -}} c", &v), "a b c");
        assert_eq!(r("{{/* comment */}}x", &v), "x");
        assert_eq!(
            r("{{truncate .Name 2}}|{{pad .Name 1 1}}|", &v),
            "we| web |"
        );
        assert_eq!(r("{{.Label \"b\"}}", &v), "2");
        assert_eq!(r("{{.Label \"x\"}}", &json!({"Labels": "x=1,y=2"})), "1");
        assert_eq!(
            r(
                "{{(index .NetworkSettings.Networks \"bridge\").IPAddress}}",
                &v
            ),
            "10.0.0.2"
        );
        assert_eq!(
            r(
                "{{range $i, $e := .Names}}{{if $i}},{{end}}{{$e}}{{end}}",
                &v
            ),
            "a,b"
        );
        for bad in [
            "{{if .Name}}x",
            "{{end}}",
            "{{nofunc .Name}}",
            "{{index .Count 1}}",
            "{{.Name | }}",
        ] {
            let e = render(bad, &v).unwrap_err().to_string();
            assert!(e.contains("--format") && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn table_json_and_template_lists() {
        let objs = vec![json!({"ID": "abc", "RunningFor": "2 minutes", "Names": "web"})];
        let list = |f: Option<&str>| {
            let mut out = Vec::new();
            print_list(
                &mut out,
                f,
                "{{.ID}}\\t{{.Names}}",
                &[("ID", "CONTAINER ID")],
                &objs,
            )
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(list(None), "CONTAINER ID   NAMES\nabc            web\n");
        assert_eq!(list(Some("table")), list(None));
        assert_eq!(
            list(Some("table {{.Names}}\\t{{.RunningFor}}")),
            "NAMES     RUNNING FOR\nweb       2 minutes\n"
        );
        assert_eq!(list(Some("{{.Names}}")), "web\n");
        assert_eq!(
            list(Some("json")),
            "{\"ID\":\"abc\",\"RunningFor\":\"2 minutes\",\"Names\":\"web\"}\n"
        );
        let mut out = Vec::new();
        print_list(&mut out, Some("table {{.Names}}"), "", &[], &[]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "NAMES\n");
    }
}
