//! The purge predicate: a small SQL-like boolean expression over columns, parsed once against
//! the table schema and evaluated per batch with Arrow kernels.
//!
//! Grammar: `expr := or; or := and (OR and)*; and := unary (AND unary)*;
//! unary := NOT unary | '(' expr ')' | column op literal | column [NOT] IN '(' literal, … ')'`,
//! with `op` one of `= != <> < <= > >=`, literals `'strings'` (`''` escapes a quote), numbers,
//! `true`/`false`. Column names are bare identifiers or `"quoted"`. Keywords are case
//! insensitive. SQL three-valued logic: a comparison with a null is unknown, and only rows
//! for which the predicate is *true* are purged.

use arrow::array::{ArrayRef, BooleanArray, Datum, RecordBatch, Scalar, StringArray};
use arrow::compute::kernels::boolean::{and_kleene, not, or_kleene};
use arrow::compute::kernels::cmp;
use arrow::compute::{CastOptions, cast_with_options};
use arrow_schema::Schema;

/// Why a predicate does not parse or does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position} ({token}): {message}")]
pub struct PredicateError {
    /// Byte offset in the predicate text.
    pub position: usize,
    /// The offending token, or `end of input`.
    pub token: String,
    pub message: String,
}

impl PredicateError {
    pub fn reason(&self) -> &'static str {
        "BadPredicate"
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed, schema-checked predicate.
#[derive(Clone, Debug)]
pub enum Predicate {
    Cmp {
        column: usize,
        op: CmpOp,
        value: ArrayRef,
    },
    In {
        column: usize,
        values: Vec<ArrayRef>,
        negated: bool,
    },
    Not(Box<Predicate>),
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: usize,
    text: String,
}

fn lex(src: &str) -> Result<Vec<Token>, PredicateError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        let start = i;
        let err = |message: &str, token: &str| PredicateError {
            position: start,
            token: token.to_string(),
            message: message.to_string(),
        };
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(ch) = src[i..].chars().next() else {
                        return Err(err("unterminated quoted text", &src[start..]));
                    };
                    i += ch.len_utf8();
                    if ch == quote {
                        if src[i..].starts_with(quote) {
                            s.push(quote);
                            i += 1;
                        } else {
                            break;
                        }
                    } else {
                        s.push(ch);
                    }
                }
                if quote == '\'' {
                    Tok::Str(s)
                } else {
                    Tok::Ident(s)
                }
            }
            '=' => {
                i += if src[i..].starts_with("==") { 2 } else { 1 };
                Tok::Op("=")
            }
            '!' if src[i..].starts_with("!=") => {
                i += 2;
                Tok::Op("!=")
            }
            '<' => {
                if src[i..].starts_with("<=") {
                    i += 2;
                    Tok::Op("<=")
                } else if src[i..].starts_with("<>") {
                    i += 2;
                    Tok::Op("!=")
                } else {
                    i += 1;
                    Tok::Op("<")
                }
            }
            '>' => {
                if src[i..].starts_with(">=") {
                    i += 2;
                    Tok::Op(">=")
                } else {
                    i += 1;
                    Tok::Op(">")
                }
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')
                {
                    i += 1;
                }
                let text = &src[start..i];
                if text.parse::<f64>().is_err() {
                    return Err(err("not a number", text));
                }
                Tok::Num(text.to_string())
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                Tok::Ident(src[start..i].to_string())
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or(c);
                return Err(err("unexpected character", &ch.to_string()));
            }
        };
        out.push(Token {
            tok,
            pos: start,
            text: src[start..i].to_string(),
        });
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    end: usize,
    schema: &'a Schema,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn error(&self, message: impl Into<String>) -> PredicateError {
        match self.peek() {
            Some(t) => PredicateError {
                position: t.pos,
                token: t.text.clone(),
                message: message.into(),
            },
            None => PredicateError {
                position: self.end,
                token: "end of input".into(),
                message: message.into(),
            },
        }
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if let Some(Token {
            tok: Tok::Ident(s), ..
        }) = self.peek()
            && s.eq_ignore_ascii_case(kw)
            && !self.tokens[self.at].text.starts_with('"')
        {
            self.at += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), PredicateError> {
        if self.peek().map(|t| &t.tok) == Some(&tok) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    fn or(&mut self) -> Result<Predicate, PredicateError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            let right = self.and()?;
            left = Predicate::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Predicate, PredicateError> {
        let mut left = self.unary()?;
        while self.keyword("AND") {
            let right = self.unary()?;
            left = Predicate::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Predicate, PredicateError> {
        if self.keyword("NOT") {
            return Ok(Predicate::Not(Box::new(self.unary()?)));
        }
        if self.peek().map(|t| &t.tok) == Some(&Tok::LParen) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Predicate, PredicateError> {
        let Some(Token {
            tok: Tok::Ident(name),
            ..
        }) = self.peek().cloned()
        else {
            return Err(self.error("expected a column name"));
        };
        let column = self
            .schema
            .index_of(&name)
            .map_err(|_| self.error(format!("unknown column {name:?}")))?;
        self.at += 1;
        let negated = self.keyword("NOT");
        if self.keyword("IN") {
            self.expect(Tok::LParen, "'(' after IN")?;
            let mut values = vec![self.literal(column)?];
            while self.peek().map(|t| &t.tok) == Some(&Tok::Comma) {
                self.at += 1;
                values.push(self.literal(column)?);
            }
            self.expect(Tok::RParen, "')' closing the IN list")?;
            return Ok(Predicate::In {
                column,
                values,
                negated,
            });
        }
        if negated {
            return Err(self.error("expected IN after NOT"));
        }
        let op = match self.peek().map(|t| &t.tok) {
            Some(Tok::Op(op)) => match *op {
                "=" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            },
            _ => return Err(self.error("expected a comparison operator or IN")),
        };
        self.at += 1;
        let value = self.literal(column)?;
        Ok(Predicate::Cmp { column, op, value })
    }

    /// A literal converted to the type of `column`.
    fn literal(&mut self, column: usize) -> Result<ArrayRef, PredicateError> {
        let text = match self.peek().map(|t| &t.tok) {
            Some(Tok::Str(s)) | Some(Tok::Num(s)) => s.clone(),
            Some(Tok::Ident(s))
                if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
            {
                s.to_ascii_lowercase()
            }
            _ => return Err(self.error("expected a literal")),
        };
        let field = self.schema.field(column);
        let raw: ArrayRef = std::sync::Arc::new(StringArray::from(vec![text.as_str()]));
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let value = cast_with_options(&raw, field.data_type(), &options).map_err(|_| {
            self.error(format!(
                "{text:?} is not a valid {} for column {:?}",
                field.data_type(),
                field.name()
            ))
        })?;
        self.at += 1;
        Ok(value)
    }
}

impl Predicate {
    /// Parses `text` against `schema`.
    ///
    /// # Errors
    /// A [`PredicateError`] naming the position and token.
    pub fn parse(text: &str, schema: &Schema) -> Result<Predicate, PredicateError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            end: text.len(),
            schema,
        };
        if p.tokens.is_empty() {
            return Err(p.error("empty predicate"));
        }
        let pred = p.or()?;
        if p.peek().is_some() {
            return Err(p.error("unexpected token after the expression"));
        }
        Ok(pred)
    }

    /// Evaluates the predicate on `batch` (whose leading columns follow the parse schema):
    /// true, false or null (unknown) per row.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, arrow::error::ArrowError> {
        match self {
            Predicate::Cmp { column, op, value } => {
                compare(batch.column(*column), *op, &Scalar::new(value.clone()))
            }
            Predicate::In {
                column,
                values,
                negated,
            } => {
                let col = batch.column(*column);
                let mut acc = cmp::eq(col, &Scalar::new(values[0].clone()))?;
                for v in &values[1..] {
                    acc = or_kleene(&acc, &cmp::eq(col, &Scalar::new(v.clone()))?)?;
                }
                if *negated { not(&acc) } else { Ok(acc) }
            }
            Predicate::Not(inner) => not(&inner.evaluate(batch)?),
            Predicate::And(a, b) => and_kleene(&a.evaluate(batch)?, &b.evaluate(batch)?),
            Predicate::Or(a, b) => or_kleene(&a.evaluate(batch)?, &b.evaluate(batch)?),
        }
    }

    /// The rows to keep: those for which the predicate is not true.
    pub fn keep_mask(&self, batch: &RecordBatch) -> Result<BooleanArray, arrow::error::ArrowError> {
        let matched = self.evaluate(batch)?;
        Ok(matched
            .iter()
            .map(|m| Some(m != Some(true)))
            .collect::<BooleanArray>())
    }
}

fn compare(
    col: &dyn Datum,
    op: CmpOp,
    value: &dyn Datum,
) -> Result<BooleanArray, arrow::error::ArrowError> {
    match op {
        CmpOp::Eq => cmp::eq(col, value),
        CmpOp::Ne => cmp::neq(col, value),
        CmpOp::Lt => cmp::lt(col, value),
        CmpOp::Le => cmp::lt_eq(col, value),
        CmpOp::Gt => cmp::gt(col, value),
        CmpOp::Ge => cmp::gt_eq(col, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    None,
                    Some("it's"),
                ])),
                Arc::new(Int64Array::from(vec![Some(1), Some(5), Some(9), None])),
            ],
        )
        .unwrap()
    }

    fn purged(text: &str) -> Vec<bool> {
        let b = batch();
        let p = Predicate::parse(text, b.schema().as_ref()).unwrap();
        p.keep_mask(&b)
            .unwrap()
            .iter()
            .map(|k| !k.unwrap())
            .collect()
    }

    #[test]
    fn comparisons_and_boolean_operators_select_rows_to_purge() {
        assert_eq!(purged("user = 'a'"), [true, false, false, false]);
        assert_eq!(
            purged("n >= 5 AND NOT user = 'b'"),
            [false, false, false, false]
        );
        assert_eq!(
            purged("n >= 5 and not (user = 'b')"),
            [false, false, false, false]
        );
        assert_eq!(purged("n < 2 OR n > 8"), [true, false, true, false]);
        assert_eq!(purged("n <> 5"), [true, false, true, false]);
        assert_eq!(purged("user = 'it''s'"), [false, false, false, true]);
        assert_eq!(
            purged("\"n\" <= -1 or n != 1 and n = 5"),
            [false, true, false, false]
        );
    }

    #[test]
    fn in_and_not_in_lists_skip_nulls() {
        assert_eq!(purged("user IN ('a', 'b')"), [true, true, false, false]);
        assert_eq!(purged("user NOT IN ('a')"), [false, true, false, true]);
        assert_eq!(purged("n in (1, 9)"), [true, false, true, false]);
    }

    #[test]
    fn parse_errors_name_position_and_token() {
        let s = batch().schema();
        let e = Predicate::parse("user = ", &s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "at position 7 (end of input): expected a literal"
        );
        let e = Predicate::parse("bogus = 1", &s).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"at position 0 (bogus): unknown column "bogus""#
        );
        let e = Predicate::parse("n = 'x'", &s).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("at position 4 ('x'): \"x\" is not a valid Int64"),
            "{e}"
        );
        let e = Predicate::parse("n = 1 user", &s).unwrap_err();
        assert_eq!(e.position, 6);
        let e = Predicate::parse("(n = 1", &s).unwrap_err();
        assert!(e.to_string().contains("expected ')'"), "{e}");
        let e = Predicate::parse("user = 'a", &s).unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
        let e = Predicate::parse("n # 1", &s).unwrap_err();
        assert_eq!(e.token, "#");
    }
}
