//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}`, `$$` for a `$`;
//! defaults and replacements are interpolated too (`${A:-${B}}`).

use std::collections::BTreeMap;

/// Why a value cannot be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${` without its `}`.
    #[error("`{value}`: `${{` is not closed")]
    Unclosed {
        /// The value.
        value: String,
    },
    /// `${VAR?message}` / `${VAR:?message}` with VAR unset (or empty).
    #[error("required variable `{name}` is missing a value: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The file's message.
        message: String,
    },
    /// `${}` or a name with characters a variable cannot have.
    #[error("`{value}`: invalid variable name `{name}`")]
    Name {
        /// The value.
        value: String,
        /// The name as written.
        name: String,
    },
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `value` with its variables replaced from `vars` (an unset one is empty, as Compose does).
///
/// # Errors
/// An unclosed `${`, a required variable unset, an invalid name.
pub fn interpolate(
    value: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = closing_brace(inner).ok_or_else(|| InterpolateError::Unclosed {
                value: value.to_owned(),
            })?;
            out.push_str(&braced(&inner[..end], value, vars)?);
            rest = &inner[end + 1..];
        } else {
            let len = after
                .find(|c: char| !is_name_char(c))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&after[..len]).map_or("", String::as_str));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${` whose text starts `inner`.
fn closing_brace(inner: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The value of `${expr}`.
fn braced(
    expr: &str,
    value: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, InterpolateError> {
    let len = expr.find(|c: char| !is_name_char(c)).unwrap_or(expr.len());
    let (name, op) = expr.split_at(len);
    if name.is_empty() {
        return Err(InterpolateError::Name {
            value: value.to_owned(),
            name: expr.to_owned(),
        });
    }
    let current = vars.get(name);
    let set = current.is_some();
    let non_empty = current.is_some_and(|v| !v.is_empty());
    let own = || current.cloned().unwrap_or_default();
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    let present = if colon { non_empty } else { set };
    let Some(kind) = op.chars().next() else {
        return if colon {
            Err(InterpolateError::Name {
                value: value.to_owned(),
                name: expr.to_owned(),
            })
        } else {
            Ok(own())
        };
    };
    let arg = &op[kind.len_utf8()..];
    match kind {
        '-' | '?' if present => Ok(own()),
        '-' => interpolate(arg, vars),
        '+' if present => interpolate(arg, vars),
        '+' => Ok(String::new()),
        '?' => Err(InterpolateError::Required {
            name: name.to_owned(),
            message: interpolate(arg, vars)?,
        }),
        _ => Err(InterpolateError::Name {
            value: value.to_owned(),
            name: expr.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_compose_takes() {
        let vars: BTreeMap<String, String> = [("TAG", "1.2"), ("EMPTY", ""), ("REG", "r:5000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let i = |s: &str| interpolate(s, &vars);
        assert_eq!(i("app:$TAG").unwrap(), "app:1.2");
        assert_eq!(i("${REG}/app:${TAG}").unwrap(), "r:5000/app:1.2");
        assert_eq!(i("${NOPE}x$NOPE").unwrap(), "x");
        assert_eq!(i("${EMPTY:-d} ${EMPTY-d} ${NOPE-d}").unwrap(), "d  d");
        assert_eq!(i("${NOPE:-${TAG}}").unwrap(), "1.2");
        assert_eq!(
            i("${TAG:+set} ${EMPTY:+set} ${EMPTY+set}").unwrap(),
            "set  set"
        );
        assert_eq!(i("cost $$5 and $").unwrap(), "cost $5 and $");
        assert_eq!(
            i("${NOPE:?give NOPE}"),
            Err(InterpolateError::Required {
                name: "NOPE".into(),
                message: "give NOPE".into()
            })
        );
        assert!(matches!(i("${TAG"), Err(InterpolateError::Unclosed { .. })));
        assert!(matches!(i("${}"), Err(InterpolateError::Name { .. })));
    }
}
