//! `rbuild parse`.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use builder_core::dockerfile::{self, CheckOptions};

use crate::args::{Format, ParseArgs};
use crate::render;

pub(crate) fn run(args: &ParseArgs) -> anyhow::Result<ExitCode> {
    let (path, src) = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the Dockerfile from standard input")?;
        ("<stdin>".into(), s)
    } else {
        let s = fs_err::read_to_string(&args.file)?;
        (args.file.clone(), s)
    };
    let invalid = |source| render::DockerfileError::parse(&path, src.clone(), source);
    let parsed = dockerfile::parse(&src).map_err(invalid)?;
    let checked = if args.check {
        let opts = CheckOptions {
            build_args: super::build_args(&args.build_args),
            automatic_args: BTreeMap::new(),
            named_contexts: BTreeMap::new(),
        };
        Some(dockerfile::check(&parsed, &opts).map_err(invalid)?)
    } else {
        None
    };
    match args.format {
        Format::Json => {
            let mut value = parsed.to_json();
            if let Some(c) = &checked {
                value["stages"] = serde_json::to_value(stage_summary(c))?;
            }
            render::stdout(&format!("{}\n", serde_json::to_string_pretty(&value)?));
        }
        Format::Text => {
            render::stdout(&parsed.dump());
            if let Some(c) = &checked {
                render::stdout(&c.dump());
            }
        }
    }
    let checked_warnings = checked.iter().flat_map(|c| &c.warnings);
    for w in parsed.warnings.iter().chain(checked_warnings) {
        render::warning(&format!(
            "{}:{}: {}",
            path.display(),
            w.span.line,
            w.message
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn stage_summary(c: &dockerfile::Checked) -> Vec<serde_json::Value> {
    c.stages
        .iter()
        .map(|s| {
            serde_json::json!({
                "index": s.index,
                "name": s.name,
                "line": s.span.line,
                "base": s.base.written,
                "base_expanded": s.base.expanded,
                "source": s.base.source,
                "platform": s.platform,
                "dependencies": s.dependencies.iter().map(|d| &d.source).collect::<Vec<_>>(),
            })
        })
        .collect()
}
