//! The entry point: parsing what the user named (`module:function`, a
//! console-script name, or a `.py` file such as pop-build's `run.py`) and
//! writing `ferry/entry.py`, the bootstrap the launcher runs.

use std::path::Path;

use anyhow::{bail, Result};
use serde_json::json;

/// A resolved entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `module:attr` (attr may be dotted).
    Function {
        /// Module to import.
        module: String,
        /// Attribute path to call.
        attr: String,
    },
    /// A script copied into the bundle at `path` (bundle-relative).
    Script {
        /// Bundle-relative path of the script.
        path: String,
    },
}

impl Entry {
    /// What the bootstraps read: `{"kind": "function", "module", "attr"}` or
    /// `{"kind": "script", "path"}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Entry::Function { module, attr } => {
                json!({"kind": "function", "module": module, "attr": attr})
            }
            Entry::Script { path } => json!({"kind": "script", "path": path}),
        }
    }

    /// `simple_api.app:main` or `ferry/app/run.py`.
    pub fn display(&self) -> String {
        match self {
            Entry::Function { module, attr } => format!("{module}:{attr}"),
            Entry::Script { path } => path.clone(),
        }
    }
}

fn is_identifier_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            !p.is_empty()
                && !p.starts_with(|c: char| c.is_ascii_digit())
                && p.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// Parses `module:attr` (with an optional ` [extras]` suffix as in entry point
/// metadata).
pub fn parse_function(spec: &str) -> Option<Entry> {
    let spec = spec.split('[').next().unwrap_or(spec).trim();
    let (module, attr) = spec.split_once(':')?;
    let (module, attr) = (module.trim(), attr.trim());
    (is_identifier_path(module) && is_identifier_path(attr)).then(|| Entry::Function {
        module: module.to_owned(),
        attr: attr.to_owned(),
    })
}

/// Writes `<bundle>/ferry/entry.py`.
pub fn write_bootstrap(bundle: &Path, name: &str, entry: &Entry, python: (u32, u32)) -> Result<()> {
    if name.contains(['"', '\\', '\n']) {
        bail!("app name `{name}` cannot be used in the bootstrap");
    }
    let entry_json = match entry {
        Entry::Function { module, attr } => {
            json!({"kind": "function", "module": module, "attr": attr})
        }
        Entry::Script { path } => json!({"kind": "script", "path": path}),
    };
    let text = include_str!("entry_template.py")
        .replace("__FERRY_NAME__", name)
        .replace("__FERRY_ENTRY__", &entry_json.to_string())
        .replace("__FERRY_PYTHON__", &json!([python.0, python.1]).to_string());
    let dir = bundle.join("ferry");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("entry.py"), text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entry_points() {
        assert_eq!(
            parse_function("simple_api.app:main"),
            Some(Entry::Function {
                module: "simple_api.app".into(),
                attr: "main".into()
            })
        );
        assert_eq!(
            parse_function("httpie.__main__:main [cli]"),
            Some(Entry::Function {
                module: "httpie.__main__".into(),
                attr: "main".into()
            })
        );
        assert_eq!(parse_function("run.py"), None);
        assert_eq!(parse_function("a b:c"), None);
        assert_eq!(parse_function("mod:"), None);
    }
}
