//! Splitting a script into statements, for files that run outside a transaction:
//! PostgreSQL refuses `CREATE INDEX CONCURRENTLY` in a multi-statement query string
//! (it runs as one implicit transaction), so each statement is sent on its own.
//!
//! A `;` ends a statement unless it is inside a string (`'...'`, `E'...'` with
//! backslash escapes), a quoted identifier, a dollar-quoted body (`$tag$...$tag$`),
//! or a comment (`--` to the line's end, nested `/* */`).

/// The statements of `sql`, trimmed, without those that are only comments or blank.
pub fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut has_code = false;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match b {
            b'-' if next == Some(b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'/' if next == Some(b'*') => {
                let mut depth = 0usize;
                while i < bytes.len() {
                    if sql[i..].starts_with("/*") {
                        depth += 1;
                        i += 2;
                    } else if sql[i..].starts_with("*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E');
                i = skip_quoted(bytes, i, b'\'', escapes);
                has_code = true;
                continue;
            }
            b'"' => {
                i = skip_quoted(bytes, i, b'"', false);
                has_code = true;
                continue;
            }
            b'$' => {
                if let Some(tag_len) = dollar_tag(&sql[i..]) {
                    let tag = &sql[i..i + tag_len];
                    i = sql[i + tag_len..]
                        .find(tag)
                        .map_or(bytes.len(), |n| i + tag_len + n + tag_len);
                    has_code = true;
                    continue;
                }
            }
            b';' => {
                if has_code {
                    out.push(sql[start..i].trim());
                }
                start = i + 1;
                has_code = false;
                i += 1;
                continue;
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            has_code = true;
        }
        i += 1;
    }
    if has_code {
        out.push(sql[start..].trim());
    }
    out
}

/// The index past the closing `quote` of the string opening at `open`.
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The length of a dollar-quote tag (`$$`, `$body$`) at the start of `s`.
fn dollar_tag(s: &str) -> Option<usize> {
    let rest = &s[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(k, c)| c == '_' || c.is_alphabetic() || (k > 0 && c.is_ascii_digit()));
    valid.then_some(end + 2)
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "-- matrx-orm: no-transaction\n\
                   CREATE INDEX CONCURRENTLY a ON t (x);\n\
                   INSERT INTO t VALUES ('a;b', E'c\\';d', \"we;ird\");\n\
                   /* one; /* nested; */ */ DO $body$ BEGIN PERFORM 1; END $body$;\n\
                   SELECT $$x;y$$ -- trailing; comment\n;\n  -- only a comment;\n";
        assert_eq!(
            statements(sql),
            vec![
                "-- matrx-orm: no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x)",
                "INSERT INTO t VALUES ('a;b', E'c\\';d', \"we;ird\")",
                "/* one; /* nested; */ */ DO $body$ BEGIN PERFORM 1; END $body$",
                "SELECT $$x;y$$ -- trailing; comment",
            ]
        );
        assert!(statements("  -- nothing\n/* here */ ; ").is_empty());
        assert_eq!(statements("SELECT $1"), vec!["SELECT $1"]);
    }
}
