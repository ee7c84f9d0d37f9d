use super::Result;
use crate::Cli;
use hako_runtime::state::{list_ids, Container};

/// List containers
#[derive(clap::Args)]
pub struct Args {
    /// table or json
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Print only the ids
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    let mut states = Vec::new();
    for id in list_ids(&cli.root)? {
        // A container deleted while we list is simply not listed.
        if let Ok(c) = Container::load(&cli.root, &id) {
            states.push(c.oci_state(&cli.root));
        }
    }
    if a.quiet {
        for s in &states {
            println!("{}", s.id);
        }
    } else if a.format == "json" {
        println!("{}", serde_json::to_string(&states).expect("serializes"));
    } else {
        let rows: Vec<[String; 6]> = states
            .iter()
            .map(|s| {
                [
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    if s.owner.is_empty() {
                        "root".into()
                    } else {
                        s.owner.clone()
                    },
                ]
            })
            .collect();
        let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
        let mut widths = [0usize; 6];
        for r in std::iter::once(&head).chain(rows.iter()) {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        for r in std::iter::once(&head).chain(rows.iter()) {
            let line: Vec<String> = r
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", line.join("   ").trim_end());
        }
    }
    Ok(0)
}
