//! Filter expressions over record fields, type-checked against the pipeline's
//! record schema before anything runs:
//!
//! ```text
//! expr  := or
//! or    := and ("or" and)*
//! and   := not ("and" not)*
//! not   := "not" not | cmp
//! cmp   := value (("==" | "!=" | "<" | "<=" | ">" | ">=") value)?
//! value := FIELD | NUMBER | "string" | true | false | "(" expr ")"
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use crate::FieldType;
use crate::StageError;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Field(String),
    Num(f64),
    Str(String),
    Bool(bool),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, Op, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Op(Op),
    LParen,
    RParen,
}

fn lex(s: &str) -> Result<Vec<Tok>, StageError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push(if c == '(' { Tok::LParen } else { Tok::RParen });
            i += 1;
        } else if "=!<>".contains(c) {
            let two = s.get(i..i + 2).unwrap_or("");
            let (op, n) = match (c, two) {
                (_, "==") => (Op::Eq, 2),
                (_, "!=") => (Op::Ne, 2),
                (_, "<=") => (Op::Le, 2),
                (_, ">=") => (Op::Ge, 2),
                ('<', _) => (Op::Lt, 1),
                ('>', _) => (Op::Gt, 1),
                _ => return Err(format!("unknown operator at character {}; use == != < <= > >=", i + 1).into()),
            };
            out.push(Tok::Op(op));
            i += n;
        } else if c == '"' || c == '\'' {
            let end =
                s[i + 1..].find(c).ok_or_else(|| format!("string starting at character {} is not closed", i + 1))?;
            out.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
            i += end + 2;
        } else if c.is_ascii_digit() || c == '-' || c == '.' {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'e' || b[i] == b'E') {
                i += 1;
            }
            let n = s[start..i].parse().map_err(|_| format!("bad number {:?}", &s[start..i]))?;
            out.push(Tok::Num(n));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(s[start..i].to_string()));
        } else {
            return Err(format!("unexpected {c:?} at character {}", i + 1).into());
        }
    }
    Ok(out)
}

/// Longest expression, in tokens, and deepest nesting of `(` and `not`: far past
/// any filter a person writes, and well inside the stack that parsing, checking and
/// evaluating recurse on (the `expr` fuzz target overflowed it at 9,000 `(`).
const MAX_TOKENS: usize = 2000;
const MAX_DEPTH: usize = 100;

struct P {
    toks: Vec<Tok>,
    i: usize,
    depth: usize,
}

impl P {
    fn kw(&mut self, k: &str) -> bool {
        if matches!(self.toks.get(self.i), Some(Tok::Ident(x)) if x == k) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn or(&mut self) -> Result<Expr, StageError> {
        let mut e = self.and()?;
        while self.kw("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, StageError> {
        let mut e = self.not()?;
        while self.kw("and") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }
    /// Runs `f` one level deeper, refusing past [`MAX_DEPTH`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, StageError>) -> Result<T, StageError> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("the expression nests `(` and `not` more than {MAX_DEPTH} deep").into());
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }
    fn not(&mut self) -> Result<Expr, StageError> {
        if self.kw("not") {
            return Ok(Expr::Not(Box::new(self.nested(Self::not)?)));
        }
        let left = self.value()?;
        if let Some(Tok::Op(op)) = self.toks.get(self.i).cloned() {
            self.i += 1;
            let right = self.value()?;
            return Ok(Expr::Cmp(Box::new(left), op, Box::new(right)));
        }
        Ok(left)
    }
    fn value(&mut self) -> Result<Expr, StageError> {
        let t = self.toks.get(self.i).cloned().ok_or("expression ends too early")?;
        self.i += 1;
        Ok(match t {
            Tok::Num(n) => Expr::Num(n),
            Tok::Str(s) => Expr::Str(s),
            Tok::Ident(k) if k == "true" || k == "false" => Expr::Bool(k == "true"),
            Tok::Ident(k) if ["and", "or", "not"].contains(&k.as_str()) => {
                return Err(format!("`{k}` needs a value before it").into())
            }
            Tok::Ident(k) => Expr::Field(k),
            Tok::LParen => {
                let e = self.nested(Self::or)?;
                if self.toks.get(self.i) != Some(&Tok::RParen) {
                    return Err("missing `)`".into());
                }
                self.i += 1;
                e
            }
            other => return Err(format!("expected a field, number, string or `(`, found {other:?}").into()),
        })
    }
}

pub fn parse(s: &str) -> Result<Expr, StageError> {
    let toks = lex(s)?;
    if toks.len() > MAX_TOKENS {
        return Err(format!("the expression has {} tokens; at most {MAX_TOKENS} are read", toks.len()).into());
    }
    let mut p = P { toks, i: 0, depth: 0 };
    let e = p.or()?;
    if p.i != p.toks.len() {
        return Err(format!("unexpected {:?} after the expression", p.toks[p.i]).into());
    }
    Ok(e)
}

impl Expr {
    /// The expression's type over `schema`; errors name the field or the mismatch.
    pub fn check(&self, schema: &BTreeMap<String, FieldType>) -> Result<FieldType, StageError> {
        Ok(match self {
            Expr::Field(f) => *schema.get(f).ok_or_else(|| {
                format!("no field {f:?} at this point; fields are {:?}", schema.keys().collect::<Vec<_>>())
            })?,
            Expr::Num(_) => FieldType::Number,
            Expr::Str(_) => FieldType::String,
            Expr::Bool(_) => FieldType::Bool,
            Expr::Not(e) => {
                if e.check(schema)? != FieldType::Bool {
                    return Err("`not` needs a bool".into());
                }
                FieldType::Bool
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                if a.check(schema)? != FieldType::Bool || b.check(schema)? != FieldType::Bool {
                    return Err("`and`/`or` join bool expressions".into());
                }
                FieldType::Bool
            }
            Expr::Cmp(a, op, b) => {
                let (ta, tb) = (a.check(schema)?, b.check(schema)?);
                if ta != tb {
                    return Err(format!("cannot compare {ta:?} with {tb:?}").into());
                }
                if ta != FieldType::Number && !matches!(op, Op::Eq | Op::Ne) {
                    return Err(format!("{op:?} compares numbers, not {ta:?}").into());
                }
                FieldType::Bool
            }
        })
    }

    fn eval_value(&self, r: &serde_json::Map<String, Value>) -> Result<Value, StageError> {
        Ok(match self {
            Expr::Field(f) => r.get(f).cloned().ok_or_else(|| format!("record has no field {f:?}"))?,
            Expr::Num(n) => Value::from(*n),
            Expr::Str(s) => Value::from(s.as_str()),
            Expr::Bool(b) => Value::from(*b),
            other => Value::from(other.eval(r)?),
        })
    }

    /// Evaluates a bool expression on a record.
    pub fn eval(&self, r: &serde_json::Map<String, Value>) -> Result<bool, StageError> {
        Ok(match self {
            Expr::Not(e) => !e.eval(r)?,
            Expr::And(a, b) => a.eval(r)? && b.eval(r)?,
            Expr::Or(a, b) => a.eval(r)? || b.eval(r)?,
            Expr::Cmp(a, op, b) => {
                let (x, y) = (a.eval_value(r)?, b.eval_value(r)?);
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => match op {
                        Op::Eq => x == y,
                        Op::Ne => x != y,
                        Op::Lt => x < y,
                        Op::Le => x <= y,
                        Op::Gt => x > y,
                        Op::Ge => x >= y,
                    },
                    _ => match op {
                        Op::Eq => x == y,
                        Op::Ne => x != y,
                        _ => return Err(format!("{op:?} needs numbers, got {x} and {y}").into()),
                    },
                }
            }
            other => other.eval_value(r)?.as_bool().ok_or_else(|| format!("{other:?} is not a bool"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_and_huge_expressions_are_refused_not_overflowed() {
        let deep = format!("{}weight > 1{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(parse(&deep).expect_err("deep").to_string().contains("more than 100 deep"));
        let ok = format!("{}weight > 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        parse(&ok).expect("100 levels parse");
        let long = vec!["valid"; 1500].join(" and ");
        assert!(parse(&long).expect_err("long").to_string().contains("at most 2000"));
        // Inputs the fuzzer broke (a stack overflow at 9,000 levels) stay fixed.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/expr");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/regressions/expr") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            assert!(parse(&text).is_err(), "{}...", &text[..40]);
            n += 1;
        }
        assert!(n > 0);
    }

    fn schema() -> BTreeMap<String, FieldType> {
        [
            ("w".to_string(), FieldType::Number),
            ("ok".to_string(), FieldType::Bool),
            ("s".to_string(), FieldType::String),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn parses_checks_and_evaluates() {
        let e = parse("w >= 10 and (ok == true or s != 'x') and not w > 500").expect("parse");
        assert_eq!(e.check(&schema()).expect("types"), FieldType::Bool);
        let rec = serde_json::json!({"w": 12.0, "ok": false, "s": "y"});
        assert!(e.eval(rec.as_object().expect("obj")).expect("eval"));
        let rec = serde_json::json!({"w": 12.0, "ok": false, "s": "x"});
        assert!(!e.eval(rec.as_object().expect("obj")).expect("eval"));
    }

    #[test]
    fn type_errors_name_the_problem() {
        assert!(parse("w > 'a'").expect("p").check(&schema()).expect_err("mismatch").0.contains("cannot compare"));
        assert!(parse("nope == 1").expect("p").check(&schema()).expect_err("field").0.contains("no field \"nope\""));
        assert!(parse("s < 'a'").expect("p").check(&schema()).expect_err("order").0.contains("compares numbers"));
        assert!(parse("w >").is_err());
        assert!(parse("w = 1").is_err());
    }
}
