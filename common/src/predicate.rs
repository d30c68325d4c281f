//! The purge predicate: a small SQL-like boolean expression over columns, parsed once against
//! the table schema and evaluated per batch with Arrow kernels.
//!
//! Grammar: `expr := or; or := and (OR and)*; and := unary (AND unary)*;
//! unary := NOT unary | '(' expr ')' | column op literal | column [NOT] IN '(' literal, … ')'`,
//! with `op` one of `= != <> < <= > >=`, literals `'strings'` (`''` escapes a quote), numbers,
//! `true`/`false`. Column names are bare identifiers or `"quoted"`. Keywords are case
//! insensitive. SQL three-valued logic: a comparison with a null is unknown, and only rows
//! for which the predicate is *true* are purged.
//!
//! Nesting (parentheses and `NOT`) is bounded: text nested deeper than the parser's limit is
//! refused with a [`PredicateError`] naming where, so no predicate can exhaust the stack.
//! [`MAX_DEPTH`] is the limit for a predicate a user writes (checked when a resource is
//! applied); [`SPEC_MAX_DEPTH`] is the worker's limit for the text of a subtask spec, which
//! leaves room for the operator's combination of a user predicate with its own conditions.
//!
//! [`Expr`] is the syntax tree, without a schema: the operator parses user text into it,
//! combines trees (never text) and prints the result with [`std::fmt::Display`], a canonical
//! form that parses back to the same tree. [`Predicate`] is an [`Expr`] bound to a schema.
//!
//! Why one file: the grammar's parser, its canonical printer and its evaluation over Arrow
//! batches change together (a new operator or literal type touches all three), and the
//! round-trip tests beside them check that they agree.

use arrow::array::{ArrayRef, BooleanArray, Datum, RecordBatch, Scalar, StringArray};
use arrow::compute::kernels::boolean::{and_kleene, not, or_kleene};
use arrow::compute::kernels::cmp;
use arrow::compute::{CastOptions, cast_with_options};
use arrow_schema::Schema;

/// The deepest nesting of parentheses and `NOT` a user predicate may have.
pub const MAX_DEPTH: usize = 64;

/// The deepest nesting the worker accepts in a subtask spec: a user predicate of
/// [`MAX_DEPTH`], combined by the operator and printed canonically, stays below it.
pub const SPEC_MAX_DEPTH: usize = 4 * MAX_DEPTH + 8;

/// Why a predicate does not parse or does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position} ({token}): {message}")]
pub struct PredicateError {
    /// Character offset (0-based) in the predicate text.
    pub position: usize,
    /// The offending token, or `end of input`.
    pub token: String,
    pub message: String,
}

/// How the message of a nesting error begins.
const TOO_DEEP: &str = "nested deeper than";

impl PredicateError {
    /// The text nests deeper than the parser's limit.
    pub fn too_deep(&self) -> bool {
        self.message.starts_with(TOO_DEEP)
    }

    pub fn reason(&self) -> &'static str {
        "BadPredicate"
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A literal as written: its type comes from the column it is compared with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Literal {
    Str(String),
    /// The number's text, e.g. `-5` or `2.5`.
    Num(String),
    Bool(bool),
}

impl Literal {
    fn text(&self) -> String {
        match self {
            Literal::Str(s) | Literal::Num(s) => s.clone(),
            Literal::Bool(b) => b.to_string(),
        }
    }
}

/// A parsed predicate without a schema: the syntax tree. `And`/`Or` are n-ary so a long
/// chain `a OR b OR …` stays one level deep.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    Cmp {
        column: String,
        op: CmpOp,
        value: Literal,
    },
    In {
        column: String,
        values: Vec<Literal>,
        negated: bool,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
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
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
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
    /// When set, column names and literals are checked against it as they are read.
    schema: Option<&'a Schema>,
    depth: usize,
    max_depth: usize,
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

    fn or(&mut self) -> Result<Expr, PredicateError> {
        let mut items = vec![self.and()?];
        while self.keyword("OR") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, PredicateError> {
        let mut items = vec![self.unary()?];
        while self.keyword("AND") {
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    /// One more level of nesting (a `NOT` or a `(`), refused past the limit before any
    /// recursion, so the stack use is bounded whatever the text.
    fn enter(&mut self) -> Result<(), PredicateError> {
        if self.depth >= self.max_depth {
            return Err(self.error(format!(
                "{TOO_DEEP} {} levels of parentheses and NOT",
                self.max_depth
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, PredicateError> {
        if let Some(Token {
            tok: Tok::Ident(s),
            text,
            ..
        }) = self.peek()
            && s.eq_ignore_ascii_case("NOT")
            && !text.starts_with('"')
        {
            self.enter()?;
            self.at += 1;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.peek().map(|t| &t.tok) == Some(&Tok::LParen) {
            self.enter()?;
            self.at += 1;
            let inner = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, PredicateError> {
        let Some(Token {
            tok: Tok::Ident(name),
            ..
        }) = self.peek().cloned()
        else {
            return Err(self.error("expected a column name"));
        };
        let index = match self.schema {
            Some(schema) => Some(
                schema
                    .index_of(&name)
                    .map_err(|_| self.error(format!("unknown column {name:?}")))?,
            ),
            None => None,
        };
        self.at += 1;
        let negated = self.keyword("NOT");
        if self.keyword("IN") {
            self.expect(Tok::LParen, "'(' after IN")?;
            let mut values = vec![self.literal(index)?];
            while self.peek().map(|t| &t.tok) == Some(&Tok::Comma) {
                self.at += 1;
                values.push(self.literal(index)?);
            }
            self.expect(Tok::RParen, "')' closing the IN list")?;
            return Ok(Expr::In {
                column: name,
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
        let value = self.literal(index)?;
        Ok(Expr::Cmp {
            column: name,
            op,
            value,
        })
    }

    /// A literal, checked against the type of column `index` when there is a schema.
    fn literal(&mut self, index: Option<usize>) -> Result<Literal, PredicateError> {
        let lit = match self.peek().map(|t| (&t.tok, t.text.starts_with('"'))) {
            Some((Tok::Str(s), _)) => Literal::Str(s.clone()),
            Some((Tok::Num(s), _)) => Literal::Num(s.clone()),
            Some((Tok::Ident(s), false)) if s.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some((Tok::Ident(s), false)) if s.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.error("expected a literal")),
        };
        if let (Some(schema), Some(index)) = (self.schema, index) {
            cast_literal(&lit, schema, index).map_err(|m| self.error(m))?;
        }
        self.at += 1;
        Ok(lit)
    }
}

/// `lit` as a one-value array of the type of column `index`.
fn cast_literal(lit: &Literal, schema: &Schema, index: usize) -> Result<ArrayRef, String> {
    let text = lit.text();
    let field = schema.field(index);
    let raw: ArrayRef = std::sync::Arc::new(StringArray::from(vec![text.as_str()]));
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(&raw, field.data_type(), &options).map_err(|_| {
        format!(
            "{text:?} is not a valid {} for column {:?}",
            field.data_type(),
            field.name()
        )
    })
}

fn parse(text: &str, schema: Option<&Schema>, max_depth: usize) -> Result<Expr, PredicateError> {
    parse_bytes(text, schema, max_depth).map_err(|mut e| {
        e.position = text
            .get(..e.position)
            .map_or(e.position, |s| s.chars().count());
        e
    })
}

/// [`parse`] with byte offsets in its errors.
fn parse_bytes(
    text: &str,
    schema: Option<&Schema>,
    max_depth: usize,
) -> Result<Expr, PredicateError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        at: 0,
        end: text.len(),
        schema,
        depth: 0,
        max_depth,
    };
    if p.tokens.is_empty() {
        return Err(p.error("empty predicate"));
    }
    let expr = p.or()?;
    if p.peek().is_some() {
        return Err(p.error("unexpected token after the expression"));
    }
    Ok(expr)
}

impl Expr {
    /// Parses a user predicate (nesting up to [`MAX_DEPTH`]), without a schema.
    ///
    /// # Errors
    /// A [`PredicateError`] naming the position and token.
    pub fn parse(text: &str) -> Result<Expr, PredicateError> {
        parse(text, None, MAX_DEPTH)
    }

    /// Parses a user predicate (nesting up to [`MAX_DEPTH`]) and checks its columns and
    /// literals against `schema`.
    ///
    /// # Errors
    /// A [`PredicateError`] naming the position and token.
    pub fn parse_for(text: &str, schema: &Schema) -> Result<Expr, PredicateError> {
        parse(text, Some(schema), MAX_DEPTH)
    }

    /// All of `items` (nested `And`s are kept as subtrees, so each keeps its own scope).
    /// One item is returned as it is.
    pub fn and(mut items: Vec<Expr>) -> Expr {
        if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        }
    }

    /// The negation of `e`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(e: Expr) -> Expr {
        Expr::Not(Box::new(e))
    }

    /// The deepest nesting of `And`/`Or`/`Not` nodes (a comparison is 0).
    pub fn depth(&self) -> usize {
        match self {
            Expr::Cmp { .. } | Expr::In { .. } => 0,
            Expr::Not(e) => 1 + e.depth(),
            Expr::And(v) | Expr::Or(v) => 1 + v.iter().map(Expr::depth).max().unwrap_or(0),
        }
    }

    fn fmt_operand(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::Cmp { .. } | Expr::In { .. } => write!(f, "{self}"),
            _ => write!(f, "({self})"),
        }
    }
}

fn fmt_column(f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
    write!(f, "\"{}\"", name.replace('"', "\"\""))
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Num(s) => f.write_str(s),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The canonical text: columns quoted, every operand of `AND`, `OR` and `NOT` that is not a
/// single comparison in parentheses. It parses back to the same tree.
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::Cmp { column, op, value } => {
                fmt_column(f, column)?;
                write!(f, " {} {value}", op.as_str())
            }
            Expr::In {
                column,
                values,
                negated,
            } => {
                fmt_column(f, column)?;
                f.write_str(if *negated { " NOT IN (" } else { " IN (" })?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            Expr::Not(e) => {
                f.write_str("NOT ")?;
                e.fmt_operand(f)
            }
            Expr::And(items) | Expr::Or(items) => {
                let sep = if matches!(self, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    e.fmt_operand(f)?;
                }
                Ok(())
            }
        }
    }
}

impl Predicate {
    /// Parses the text of a subtask spec (nesting up to [`SPEC_MAX_DEPTH`]) against `schema`.
    ///
    /// # Errors
    /// A [`PredicateError`] naming the position and token.
    pub fn parse(text: &str, schema: &Schema) -> Result<Predicate, PredicateError> {
        let expr = parse(text, Some(schema), SPEC_MAX_DEPTH)?;
        Predicate::bind(&expr, schema)
    }

    /// Binds `expr` to `schema`: column indexes and typed literals.
    ///
    /// # Errors
    /// A [`PredicateError`] (position 0) for an unknown column or a literal of the wrong type.
    pub fn bind(expr: &Expr, schema: &Schema) -> Result<Predicate, PredicateError> {
        let error = |token: &str, message: String| PredicateError {
            position: 0,
            token: token.to_string(),
            message,
        };
        let column = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| error(name, format!("unknown column {name:?}")))
        };
        let value = |lit: &Literal, index: usize| {
            cast_literal(lit, schema, index).map_err(|m| error(&lit.to_string(), m))
        };
        Ok(match expr {
            Expr::Cmp {
                column: name,
                op,
                value: lit,
            } => {
                let index = column(name)?;
                Predicate::Cmp {
                    column: index,
                    op: *op,
                    value: value(lit, index)?,
                }
            }
            Expr::In {
                column: name,
                values,
                negated,
            } => {
                let index = column(name)?;
                Predicate::In {
                    column: index,
                    values: values
                        .iter()
                        .map(|v| value(v, index))
                        .collect::<Result<_, _>>()?,
                    negated: *negated,
                }
            }
            Expr::Not(e) => Predicate::Not(Box::new(Predicate::bind(e, schema)?)),
            Expr::And(v) => Predicate::And(
                v.iter()
                    .map(|e| Predicate::bind(e, schema))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(v) => Predicate::Or(
                v.iter()
                    .map(|e| Predicate::bind(e, schema))
                    .collect::<Result<_, _>>()?,
            ),
        })
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
            Predicate::And(items) | Predicate::Or(items) => {
                let and = matches!(self, Predicate::And(_));
                let mut acc: Option<BooleanArray> = None;
                for p in items {
                    let v = p.evaluate(batch)?;
                    acc = Some(match acc {
                        None => v,
                        Some(a) if and => and_kleene(&a, &v)?,
                        Some(a) => or_kleene(&a, &v)?,
                    });
                }
                Ok(acc.unwrap_or_else(|| BooleanArray::from(vec![and; batch.num_rows()])))
            }
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

    #[test]
    fn nesting_past_the_limit_is_an_error_not_a_stack_overflow() {
        let s = batch().schema();
        let deep = format!("{}n = 1{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = Predicate::parse(&deep, &s).unwrap_err();
        assert_eq!(e.position, SPEC_MAX_DEPTH);
        assert_eq!(e.token, "(");
        assert!(e.message.contains("nested deeper than"), "{e}");
        let e = Expr::parse(&deep).unwrap_err();
        assert_eq!(e.position, MAX_DEPTH);
        let nots = format!("{}n = 1", "NOT ".repeat(10_000));
        let e = Expr::parse(&nots).unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (4 * MAX_DEPTH, "NOT"));
        // At the limit it parses.
        let ok = format!("{}n = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        Expr::parse(&ok).unwrap();
        // A long flat chain is one level deep, however long.
        let chain = vec!["n = 1"; 10_000].join(" OR ");
        assert_eq!(Expr::parse(&chain).unwrap().depth(), 1);
        Predicate::parse(&chain, &s).unwrap();
    }

    #[test]
    fn the_deepest_spec_predicate_parses_and_evaluates_on_a_small_stack() {
        let text = format!(
            "{}n = 1{}",
            "(NOT ".repeat(SPEC_MAX_DEPTH / 2),
            ")".repeat(SPEC_MAX_DEPTH / 2)
        );
        let worker = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let b = batch();
                let p = Predicate::parse(&text, &b.schema()).unwrap();
                p.keep_mask(&b).unwrap().len()
            })
            .unwrap();
        assert_eq!(worker.join().unwrap(), 4);
    }

    #[test]
    fn syntax_errors_without_a_schema_name_position_and_token() {
        let e = Expr::parse("a = 'x') OR (\"ts\" >= 0").unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (7, ")"));
        assert!(e.message.contains("unexpected token"), "{e}");
        let e = Expr::parse("a = ").unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (4, "end of input"));
        // Positions count characters, not bytes.
        let e = Expr::parse("\"x\" = 'üü' AND ) ").unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (15, ")"));
        let e = Expr::parse("a IN 1").unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (5, "1"));
        // Without a schema any column is accepted; with one, unknown columns are errors.
        Expr::parse("bogus = 1").unwrap();
        let e = Expr::parse_for("n = 1 AND bogus = 1", &batch().schema()).unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (10, "bogus"));
    }

    #[test]
    fn a_combined_tree_keeps_each_operand_in_its_own_scope() {
        // `a = 'x' OR n >= 0` parses standalone; AND-ed with a condition as a tree, its OR
        // cannot reach outside its subtree.
        let filter = Expr::parse("user = 'a' OR n >= 0").unwrap();
        let scope = Expr::parse("n < 2").unwrap();
        let combined = Expr::and(vec![scope, filter]);
        let text = combined.to_string();
        assert_eq!(text, "\"n\" < 2 AND (\"user\" = 'a' OR \"n\" >= 0)");
        assert_eq!(Expr::parse(&text).unwrap(), combined);
        let b = batch();
        let p = Predicate::bind(&combined, &b.schema()).unwrap();
        let purged: Vec<bool> = p
            .keep_mask(&b)
            .unwrap()
            .iter()
            .map(|k| !k.unwrap())
            .collect();
        assert_eq!(purged, [true, false, false, false]);
        let negated = Expr::not(Expr::parse("user = 'a' OR n = 5").unwrap());
        assert_eq!(negated.to_string(), "NOT (\"user\" = 'a' OR \"n\" = 5)");
        assert_eq!(Expr::parse(&negated.to_string()).unwrap(), negated);
    }

    fn arb_expr() -> impl proptest::strategy::Strategy<Value = Expr> {
        use proptest::prelude::*;
        let column = prop_oneof![
            "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
            "[a-z \"'()]{0,6}",
            Just("NOT".to_string()),
            Just("and".to_string()),
        ];
        let literal = prop_oneof![
            "[a-z '\"()]{0,6}".prop_map(Literal::Str),
            any::<i64>().prop_map(|n| Literal::Num(n.to_string())),
            (0u32..1000, 0u32..100).prop_map(|(a, b)| Literal::Num(format!("{a}.{b}"))),
            any::<bool>().prop_map(Literal::Bool),
        ];
        let op = prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge),
        ];
        let leaf = prop_oneof![
            (column.clone(), op, literal.clone()).prop_map(|(column, op, value)| Expr::Cmp {
                column,
                op,
                value
            }),
            (
                column,
                proptest::collection::vec(literal, 1..4),
                any::<bool>()
            )
                .prop_map(|(column, values, negated)| Expr::In {
                    column,
                    values,
                    negated
                }),
        ];
        leaf.prop_recursive(5, 32, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                proptest::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn printing_then_parsing_gives_back_the_tree(e in arb_expr()) {
            let text = e.to_string();
            proptest::prop_assert_eq!(Expr::parse(&text).unwrap(), e, "{}", text);
        }
    }
}
