//! Reads module-level string constants (`EXAMPLES = r'''...'''`) out of Python
//! source without running Python: a small scanner for the string-literal forms the
//! Ansible modules use (prefixes `r`/`u`, single or triple quotes, a backslash line
//! continuation or parentheses before the literal, implicit concatenation inside
//! parentheses). Anything else (`%` formatting, `+`, f-strings, a name) is reported
//! as "not a plain string literal" rather than guessed at.

/// A constant found in a source file: its name, the 1-based line of the
/// assignment, and its value or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub name: String,
    pub line: usize,
    pub value: Result<String, String>,
}

/// Every assignment `NAME = <string literal>` whose NAME is all upper case
/// (letters, digits, `_`), at any indentation (doc fragments keep theirs in a class).
pub fn string_constants(src: &str) -> Vec<Constant> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut line = 1usize;
    while pos < bytes.len() {
        let end = memchr_newline(bytes, pos);
        let text = &src[pos..end];
        let trimmed = text.trim_start();
        if let Some((name, rest)) = assignment(trimmed) {
            let start = end - rest.len();
            let (value, consumed) = literal_expr(&src[start..]);
            out.push(Constant { name: name.to_string(), line, value });
            // Resume after what the literal covered so its contents are never read as code.
            let covered = start + consumed;
            if covered > end {
                line += src[pos..covered].matches('\n').count();
                pos = covered;
                continue;
            }
        }
        pos = end + 1;
        line += 1;
    }
    out
}

fn memchr_newline(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| from + i)
}

/// `NAME = rest` with NAME upper case; returns (NAME, text after `=`).
fn assignment(line: &str) -> Option<(&str, &str)> {
    let name_len = line.bytes().take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_').count();
    if name_len == 0 || !line.as_bytes()[0].is_ascii_uppercase() {
        return None;
    }
    let name = &line[..name_len];
    let rest = line[name_len..].trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix('=')?;
    if rest.starts_with('=') {
        return None;
    }
    Some((name, rest))
}

/// Parses the expression after `=`; returns the value and how many bytes it spans.
fn literal_expr(s: &str) -> (Result<String, String>, usize) {
    let b = s.as_bytes();
    let mut i = skip_blanks(b, 0);
    if b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'\n') {
        i = skip_blanks(b, i + 2);
    }
    let paren = b.get(i) == Some(&b'(');
    if paren {
        i += 1;
    }
    let mut value = String::new();
    let mut pieces = 0;
    loop {
        i = if paren { skip_space_and_comments(b, i) } else { skip_blanks(b, i) };
        match string_literal(s, i) {
            Some(Ok((v, next))) => {
                value.push_str(&v);
                pieces += 1;
                i = next;
            }
            Some(Err(e)) => return (Err(e), i),
            None => break,
        }
        if !paren {
            break;
        }
    }
    if pieces == 0 {
        return (Err("not a plain string literal".into()), i);
    }
    if paren {
        i = skip_space_and_comments(b, i);
        if b.get(i) != Some(&b')') {
            return (Err("not a plain string literal (an expression inside the parentheses)".into()), i);
        }
        i += 1;
    }
    let after = skip_blanks(b, i);
    match b.get(after) {
        None | Some(b'\n') | Some(b'#') | Some(b'\r') | Some(b';') => (Ok(value), i),
        Some(_) => (Err("not a plain string literal (an operator or call follows it)".into()), i),
    }
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

fn skip_space_and_comments(b: &[u8], mut i: usize) -> usize {
    loop {
        match b.get(i) {
            Some(b' ' | b'\t' | b'\n' | b'\r') => i += 1,
            Some(b'#') => {
                while !matches!(b.get(i), None | Some(b'\n')) {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// One string literal starting at `i` (with its prefix); `None` if there is none.
fn string_literal(s: &str, i: usize) -> Option<Result<(String, usize), String>> {
    let b = s.as_bytes();
    let mut j = i;
    let mut raw = false;
    while j < b.len() && j - i < 2 && b[j].is_ascii_alphabetic() {
        match b[j] {
            b'r' | b'R' => raw = true,
            b'u' | b'U' => {}
            b'f' | b'F' => return Some(Err("an f-string is not a plain string literal".into())),
            b'b' | b'B' => return Some(Err("a bytes literal is not a text constant".into())),
            _ => return None,
        }
        j += 1;
    }
    let quote = *b.get(j)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let triple = b.get(j + 1) == Some(&quote) && b.get(j + 2) == Some(&quote);
    let body_start = j + if triple { 3 } else { 1 };
    let mut k = body_start;
    loop {
        match b.get(k) {
            None => return Some(Err("unterminated string literal".into())),
            Some(b'\\') => k += 2,
            Some(b'\n') if !triple => return Some(Err("unterminated single-quoted string".into())),
            Some(&c) if c == quote => {
                if !triple {
                    break;
                }
                if b.get(k + 1) == Some(&quote) && b.get(k + 2) == Some(&quote) {
                    break;
                }
                k += 1;
            }
            Some(_) => k += 1,
        }
    }
    let body = &s[body_start..k];
    let end = k + if triple { 3 } else { 1 };
    let value = if raw { body.to_string() } else { unescape(body) };
    Some(Ok((value, end)))
}

/// Python's escape sequences in a non-raw literal; unknown escapes keep their backslash.
fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\n') => {}
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(kind @ ('x' | 'u')) => {
                let hex: String = chars.by_ref().take(if kind == 'x' { 2 } else { 4 }).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push('\\');
                        out.push(kind);
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(src: &str, name: &str) -> Result<String, String> {
        string_constants(src).into_iter().find(|c| c.name == name).expect("constant").value
    }

    #[test]
    fn reads_the_literal_forms_modules_use() {
        let src =
            "DOCUMENTATION = r'''\nmodule: x\n'''\n\nEXAMPLES = \"\"\"\n- name: a\\tb\n\"\"\"\nRETURN = '''x'''\n";
        assert_eq!(value(src, "DOCUMENTATION").expect("ok"), "\nmodule: x\n");
        assert_eq!(value(src, "EXAMPLES").expect("ok"), "\n- name: a\tb\n");
        assert_eq!(value(src, "RETURN").expect("ok"), "x");
        let cont = "EXAMPLES = \\\n    r'''\n- a\n'''\n";
        assert_eq!(value(cont, "EXAMPLES").expect("ok"), "\n- a\n");
        let paren = "EXAMPLES = (\n    'a: 1\\n'  # first\n    \"b: 2\\n\"\n)\n";
        assert_eq!(value(paren, "EXAMPLES").expect("ok"), "a: 1\nb: 2\n");
        assert_eq!(value("X = 'a\\x41\\u00e9\\xZZ'\n", "X").expect("ok"), "aA\u{e9}\\xZZ");
        let indented = "class F:\n    DOCUMENTATION = r'''\noptions: {}\n'''\n    OTHER = r'''\nx: 1\n'''\n";
        assert_eq!(value(indented, "OTHER").expect("ok"), "\nx: 1\n");
    }

    #[test]
    fn a_quote_inside_a_triple_quoted_string_does_not_end_it() {
        let src = "EXAMPLES = r'''\nmsg: 'it''s' and \\''' \n'''\nNEXT = 'n'\n";
        assert_eq!(value(src, "EXAMPLES").expect("ok"), "\nmsg: 'it''s' and \\''' \n");
        assert_eq!(value(src, "NEXT").expect("ok"), "n");
    }

    #[test]
    fn expressions_are_reported_not_guessed() {
        assert!(value("EXAMPLES = '''a %s''' % x\n", "EXAMPLES").expect_err("an error").contains("operator"));
        assert!(value("EXAMPLES = f'''a'''\n", "EXAMPLES").expect_err("an error").contains("f-string"));
        assert!(value("EXAMPLES = OTHER\n", "EXAMPLES").expect_err("an error").contains("not a plain"));
        assert!(value("EXAMPLES = '''never closed\n", "EXAMPLES").expect_err("an error").contains("unterminated"));
    }

    #[test]
    fn constants_inside_a_literal_are_not_read_as_code() {
        let src = "EXAMPLES = r'''\nRETURN = 'fake'\n'''\nRETURN = 'real'\n";
        let all = string_constants(src);
        assert_eq!(all.iter().filter(|c| c.name == "RETURN").count(), 1);
        assert_eq!(value(src, "RETURN").expect("ok"), "real");
        assert_eq!(all.iter().find(|c| c.name == "RETURN").expect("ok").line, 4);
    }
}
