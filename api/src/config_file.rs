//! `--config FILE`: a TOML file of `serve`'s options, below the environment and the flags.
//!
//! Every key is the long option's name (`sender-rate` or `sender_rate`). A file value is used
//! only for an option neither a flag nor its environment variable set: it is handed to clap as
//! if it had been typed last, so it meets the very same parsers and range checks as a flag. An
//! unknown key is refused, so a misspelt option cannot pass silently.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not TOML: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("{path}: unknown key {key:?} (`custody serve --help` lists the options)")]
    UnknownKey { path: String, key: String },
    #[error("{path}: key {key:?} must be a string, a number or a boolean")]
    BadValue { path: String, key: String },
    #[error(transparent)]
    Clap(#[from] clap::Error),
}

/// The argument ids that are not configuration.
const NOT_OPTIONS: [&str; 3] = ["config", "help", "version"];

/// The parsed arguments, and which options took their value from the file.
pub struct Parsed {
    pub matches: ArgMatches,
    pub from_file: Vec<String>,
}

/// Parses `args` with `command`; when the chosen (innermost) subcommand has a `--config FILE`,
/// parses again with the file's values for the options not set by flag or environment.
pub fn parse_with_file(command: Command, args: Vec<OsString>) -> Result<Parsed, ConfigFileError> {
    let matches = command.clone().try_get_matches_from(&args)?;
    let (leaf_command, leaf) = innermost(&command, &matches);
    // Only `serve` and `config check` have `--config`; asking another subcommand is an error.
    let Some(path) = leaf
        .try_get_one::<std::path::PathBuf>("config")
        .ok()
        .flatten()
        .cloned()
    else {
        return Ok(Parsed {
            matches,
            from_file: vec![],
        });
    };
    let (extra, from_file) = file_arguments(&path, &leaf_command, leaf)?;
    let mut args = args;
    args.extend(extra);
    Ok(Parsed {
        matches: command.try_get_matches_from(args)?,
        from_file,
    })
}

/// The innermost subcommand chosen, and its matches.
fn innermost<'a>(command: &Command, matches: &'a ArgMatches) -> (Command, &'a ArgMatches) {
    let mut command = command.clone();
    let mut matches = matches;
    while let Some((name, sub)) = matches.subcommand() {
        match command.find_subcommand(name) {
            Some(found) => command = found.clone(),
            None => break,
        }
        matches = sub;
    }
    (command, matches)
}

/// The file's options as arguments, leaving out those a flag or the environment already set.
fn file_arguments(
    path: &Path,
    command: &Command,
    matches: &ArgMatches,
) -> Result<(Vec<OsString>, Vec<String>), ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigFileError::Toml {
        path: shown.clone(),
        source,
    })?;
    let mut extra = Vec::new();
    let mut from_file = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == id.as_str() && !NOT_OPTIONS.contains(&id.as_str()))
            .ok_or_else(|| ConfigFileError::UnknownKey {
                path: shown.clone(),
                key: key.clone(),
            })?;
        if !matches!(
            matches.value_source(&id),
            None | Some(ValueSource::DefaultValue)
        ) {
            continue;
        }
        let flag = format!("--{}", arg.get_long().unwrap_or(&id));
        from_file.push(id.clone());
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) if !arg.get_action().takes_values() => {
                if b {
                    extra.push(OsString::from(flag));
                }
                continue;
            }
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(ConfigFileError::BadValue { path: shown, key }),
        };
        extra.push(OsString::from(flag));
        extra.push(OsString::from(text));
    }
    Ok((extra, from_file))
}

/// Options whose values are secret, or may carry one (a password in a URL).
const SECRETS: [&str; 3] = ["database_url", "ops_token", "reminder_webhook_url"];

/// The effective configuration of the innermost subcommand, one `key = value  # source` line
/// per option, secrets masked.
pub fn effective(command: &Command, parsed: &Parsed) -> String {
    let (command, matches) = innermost(command, &parsed.matches);
    let mut lines = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_OPTIONS.contains(&id) {
            continue;
        }
        let key = arg.get_long().unwrap_or(id);
        let source = match matches.value_source(id) {
            _ if parsed.from_file.iter().any(|f| f == id) => "file",
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let value = matches
            .get_raw(id)
            .map(|values| {
                values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let value = if SECRETS.contains(&id) {
            mask(&value)
        } else {
            value
        };
        let shown = if source == "unset" {
            "# (not set)".to_string()
        } else {
            format!("{value:?}  # {source}")
        };
        lines.push(format!("{key} = {shown}"));
    }
    lines.join("\n")
}

/// A secret shown as `***`; a URL keeps its scheme, host and path, losing user, password and
/// query.
fn mask(value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    match value.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
            format!("{scheme}://***@{rest}")
        }
        None => "***".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask("postgres://u:pw@db:5432/custody"),
            "postgres://***@db:5432/custody"
        );
        assert_eq!(mask("https://hooks/x?token=abc"), "https://***@hooks/x");
        assert_eq!(mask("0123456789abcdef0123456789abcdef"), "***");
        assert_eq!(mask(""), "");
    }
}
