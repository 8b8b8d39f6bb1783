//! `${VAR}` / `${VAR:-default}` interpolation over the raw text of the config file.
//!
//! Done on the text, before YAML parsing, so a variable can stand anywhere (a port inside a
//! listen address, a whole list in flow style). Hand-written because the crates that do this
//! (shellexpand, envsubst) neither skip YAML comments nor report line and column, and both matter
//! here: a commented-out `${VAR}` must not be required, and an unset one must be pointed at.
//!
//! The expanded text keeps every line where it was (a value holding a newline is refused), and
//! [`Expanded::original_column`] maps a column of the expanded text back to the file.

/// One `${...}` replaced on a line, in character columns (1-based, end exclusive).
#[derive(Debug, Clone, Copy)]
struct Shift {
    expanded_start: usize,
    expanded_end: usize,
    original_start: usize,
    original_end: usize,
}

/// A problem with one `${...}` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug)]
pub(crate) struct Expanded {
    pub text: String,
    shifts: Vec<Vec<Shift>>,
}

impl Expanded {
    /// Maps a 1-based character column of the expanded text on `line` back to the file.
    pub fn original_column(&self, line: usize, column: usize) -> usize {
        let Some(shifts) = line.checked_sub(1).and_then(|i| self.shifts.get(i)) else {
            return column;
        };
        let mut delta: isize = 0;
        for s in shifts {
            if column < s.expanded_start {
                break;
            }
            if column < s.expanded_end {
                return s.original_start;
            }
            delta = s.original_end as isize - s.expanded_end as isize;
        }
        (column as isize + delta).max(1) as usize
    }
}

/// Expands every `${NAME}` and `${NAME:-default}` outside comments; `$${` stands for a literal
/// `${`. `:-` takes the default when the variable is unset or empty, as in the shell.
pub(crate) fn interpolate(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<EnvError>> {
    let mut text = String::with_capacity(src.len());
    let mut all_shifts = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in src.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let mut shifts = Vec::new();
        expand_line(line, line_no, lookup, &mut text, &mut shifts, &mut errors);
        all_shifts.push(shifts);
    }
    if errors.is_empty() {
        Ok(Expanded {
            text,
            shifts: all_shifts,
        })
    } else {
        Err(errors)
    }
}

fn expand_line(
    line: &str,
    line_no: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    shifts: &mut Vec<Shift>,
    errors: &mut Vec<EnvError>,
) {
    let chars: Vec<char> = line.chars().collect();
    // Columns are counted in characters, as the YAML parsers count them.
    let mut expanded_col = 1;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' if quote.is_none() => quote = Some(c),
            q if quote == Some(q) => quote = None,
            // A YAML comment starts at `#` after whitespace (or at the line start), outside quotes.
            '#' if quote.is_none() && (i == 0 || chars[i - 1].is_whitespace()) => {
                out.extend(&chars[i..]);
                return;
            }
            '$' if chars.get(i + 1) == Some(&'$') && chars.get(i + 2) == Some(&'{') => {
                out.push_str("${");
                shifts.push(Shift {
                    expanded_start: expanded_col,
                    expanded_end: expanded_col + 2,
                    original_start: i + 1,
                    original_end: i + 4,
                });
                expanded_col += 2;
                i += 3;
                continue;
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                    errors.push(EnvError {
                        line: line_no,
                        column: i + 1,
                        message: "`${` is not closed by `}` on the same line (write `$${` for a literal `${`)".into(),
                    });
                    out.extend(&chars[i..]);
                    return;
                };
                let expr: String = chars[i + 2..i + 2 + close].iter().collect();
                let end = i + 3 + close;
                match resolve(&expr, lookup) {
                    Ok(value) if value.contains('\n') => errors.push(EnvError {
                        line: line_no,
                        column: i + 1,
                        message: format!(
                            "the value of `${{{expr}}}` spans several lines; put it in a file and name the file instead"
                        ),
                    }),
                    Ok(value) => {
                        let len = value.chars().count();
                        out.push_str(&value);
                        shifts.push(Shift {
                            expanded_start: expanded_col,
                            expanded_end: expanded_col + len,
                            original_start: i + 1,
                            original_end: end + 1,
                        });
                        expanded_col += len;
                    }
                    Err(message) => errors.push(EnvError {
                        line: line_no,
                        column: i + 1,
                        message,
                    }),
                }
                i = end;
                continue;
            }
            _ => {}
        }
        out.push(c);
        expanded_col += 1;
        i += 1;
    }
}

fn resolve(expr: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match expr.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (expr, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{expr}}}`: `{name}` is not a variable name (expected letters, digits and `_`, as in `${{GATEWAY_LISTEN:-0.0.0.0:8081}}`)"
        ));
    }
    match (lookup(name).filter(|v| !v.is_empty()), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_string()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set and `${{{name}}}` has no default (write `${{{name}:-value}}` to give one)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            "LONG" => Some("a-much-longer-value".into()),
            _ => None,
        }
    }

    fn expand(src: &str) -> Result<String, Vec<EnvError>> {
        interpolate(src, &env).map(|e| e.text)
    }

    #[test]
    fn set_variable_is_replaced_in_the_middle_of_a_value() {
        assert_eq!(
            expand("listen: 0.0.0.0:${PORT}\n").unwrap(),
            "listen: 0.0.0.0:9000\n"
        );
    }

    #[test]
    fn default_is_used_when_unset_or_empty() {
        assert_eq!(expand("a: ${NOPE:-x}\n").unwrap(), "a: x\n");
        assert_eq!(expand("a: ${EMPTY:-y}\n").unwrap(), "a: y\n");
        assert_eq!(expand("a: ${PORT:-y}\n").unwrap(), "a: 9000\n");
        assert_eq!(expand("a: ${NOPE:-}\n").unwrap(), "a: \n");
    }

    #[test]
    fn default_may_hold_colons() {
        assert_eq!(
            expand("listen: ${NOPE:-0.0.0.0:8081}").unwrap(),
            "listen: 0.0.0.0:8081"
        );
    }

    #[test]
    fn unset_variable_without_default_is_an_error_naming_it_and_its_position() {
        let errors = expand("a: 1\nb: x ${MISSING} ${ALSO}\n").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].line, errors[0].column), (2, 6));
        assert!(errors[0].message.contains("`MISSING` is not set"));
        assert_eq!((errors[1].line, errors[1].column), (2, 17));
    }

    #[test]
    fn comments_are_not_interpolated() {
        assert_eq!(
            expand("# ${MISSING}\na: 1 # ${MISSING}\n").unwrap(),
            "# ${MISSING}\na: 1 # ${MISSING}\n"
        );
    }

    #[test]
    fn hash_inside_quotes_is_not_a_comment() {
        assert_eq!(expand("a: \"x #${PORT}\"\n").unwrap(), "a: \"x #9000\"\n");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand("a: $${PORT}\n").unwrap(), "a: ${PORT}\n");
    }

    #[test]
    fn unclosed_and_invalid_names_are_errors() {
        assert!(expand("a: ${PORT\n").unwrap_err()[0]
            .message
            .contains("not closed"));
        assert!(expand("a: ${1X}\n").unwrap_err()[0]
            .message
            .contains("not a variable name"));
    }

    #[test]
    fn columns_after_a_replacement_map_back_to_the_file() {
        let e = interpolate("a: ${LONG} bad\n", &env).unwrap();
        // `bad` is at column 24 of the expanded line and column 12 of the file.
        assert_eq!(&e.text[23..26], "bad");
        assert_eq!(e.original_column(1, 24), 12);
        // Inside the replacement: the start of `${LONG}`.
        assert_eq!(e.original_column(1, 6), 4);
        // Before it: unchanged.
        assert_eq!(e.original_column(1, 2), 2);
    }
}
