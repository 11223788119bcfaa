//! SQL text the tools send: literals and identifiers quoted, table names split.

/// `value` as a SQL string literal (`'` doubled).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `name` as a quoted SQL identifier (`"` doubled), so that case and odd characters survive.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The schema the server resolves unqualified names in when no `x-lakehouse-schema` header is
/// sent.
pub const DEFAULT_SCHEMA: &str = "public";

/// A table named by an agent: `NAME` or `SCHEMA.NAME`, optionally with `"`-quoted parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The schema ([`DEFAULT_SCHEMA`] when not given).
    pub schema: String,
    /// The table.
    pub table: String,
}

impl TableName {
    /// Parses `NAME`, `SCHEMA.NAME`, `"Name"` or `"schema"."Name"`. Unquoted parts are
    /// lower-cased, as the server's SQL does.
    ///
    /// # Errors
    /// A message naming `name` when it is empty, has more than two parts or an unclosed quote.
    pub fn parse(name: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("table name {name:?}: {why}; give NAME or SCHEMA.NAME");
        let mut parts = Vec::new();
        let mut chars = name.trim().chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(bad("unclosed quote")),
                    }
                }
            } else {
                while let Some(c) = chars.peek().copied() {
                    if c == '.' {
                        break;
                    }
                    part.extend(c.to_lowercase());
                    chars.next();
                }
                part = part.trim().to_string();
            }
            if part.is_empty() {
                return Err(bad("empty part"));
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(_) => return Err(bad("text after a quoted part")),
            }
        }
        match <[String; 2]>::try_from(parts) {
            Ok([schema, table]) => Ok(Self { schema, table }),
            Err(parts) if parts.len() == 1 => Ok(Self {
                schema: DEFAULT_SCHEMA.into(),
                table: parts.into_iter().next().expect("one part"),
            }),
            Err(_) => Err(bad("too many parts")),
        }
    }

    /// The name as a SQL table reference, `"schema"."table"`.
    pub fn sql(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.table))
    }

    /// The name as table functions take it: a literal `'schema.table'`.
    pub fn literal(&self) -> String {
        literal(&format!("{}.{}", self.schema, self.table))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let t = |s: &str, t: &str| TableName {
            schema: s.into(),
            table: t.into(),
        };
        assert_eq!(TableName::parse("Orders").unwrap(), t("public", "orders"));
        assert_eq!(
            TableName::parse("tpch.lineitem").unwrap(),
            t("tpch", "lineitem")
        );
        assert_eq!(
            TableName::parse("\"My\"\"T\".\"x.y\"").unwrap(),
            t("My\"T", "x.y")
        );
        for bad in ["", "a.b.c", "a.", "\"a", "\"a\"b"] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(t("s", "it's").literal(), "'s.it''s'");
        assert_eq!(t("s", "a\"b").sql(), "\"s\".\"a\"\"b\"");
    }
}
