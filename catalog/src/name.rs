//! Validated identifiers: schema and table names, table references, version numbers.
//!
//! Names become object-store path segments, so they are restricted to 1–128 characters of
//! ASCII letters, digits, `_` and `-`, not starting with `-` or `_`-prefixed reserved names
//! (`_` prefixes are kept for Lakehouse's own files). Case is preserved; SQL resolves unquoted
//! identifiers in lower case, so lower-case names are the ones that need no quoting.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn validate(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > 128 {
        Some("must be at most 128 characters")
    } else if name.starts_with('_') || name.starts_with('-') {
        Some("must not start with '_' or '-'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("may contain only ASCII letters, digits, '_' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `name` (see the module docs).
            ///
            /// # Errors
            /// [`Error::InvalidName`] when it is empty, too long or has other characters.
            pub fn new(name: impl Into<String>) -> Result<Self> {
                let name = name.into();
                validate($kind, &name)?;
                Ok(Self(name))
            }

            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A database schema name, e.g. `public`.
    SchemaName,
    "schema"
);
name_type!(
    /// A table name, unique within its schema.
    TableName,
    "table"
);

/// The name of the default schema, which always exists.
pub const DEFAULT_SCHEMA: &str = "public";

impl SchemaName {
    /// The default schema, `public`.
    pub fn default_schema() -> Self {
        Self(DEFAULT_SCHEMA.to_string())
    }
}

/// A schema-qualified table name; displays as `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    /// The schema holding the table.
    pub schema: SchemaName,
    /// The table's name.
    pub table: TableName,
}

impl TableRef {
    /// Validates both names.
    ///
    /// # Errors
    /// [`Error::InvalidName`] when either is not a valid name.
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Result<Self> {
        Ok(Self {
            schema: SchemaName::new(schema)?,
            table: TableName::new(table)?,
        })
    }

    /// `table` in `schema`, or in `default_schema` when `schema` is `None` or empty. Every
    /// path that names a table (SQL statements, table functions, ingest) resolves it here.
    ///
    /// # Errors
    /// [`Error::InvalidName`] when either name is not valid.
    pub fn qualify(schema: Option<&str>, table: &str, default_schema: &SchemaName) -> Result<Self> {
        Ok(Self {
            schema: match schema.filter(|s| !s.is_empty()) {
                Some(s) => SchemaName::new(s)?,
                None => default_schema.clone(),
            },
            table: TableName::new(table)?,
        })
    }

    /// The table a string names: `schema.table`, or `table` in `default_schema` (as table
    /// functions take their table argument: `vector_search('docs', ...)`).
    ///
    /// # Errors
    /// [`Error::InvalidName`] when a part is not a valid name.
    pub fn parse(name: &str, default_schema: &SchemaName) -> Result<Self> {
        match name.split_once('.') {
            Some((schema, table)) => Self::qualify(Some(schema), table, default_schema),
            None => Self::qualify(None, name, default_schema),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// A table version number. Version 1 is the table's first commit; each commit adds exactly one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version after this one.
    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(TableName::new("lineitem").is_ok());
        assert!(TableName::new("My-Table_2").is_ok());
        for bad in [
            "",
            "_hidden",
            "-x",
            "a/b",
            "a.b",
            "a b",
            "ä",
            &"x".repeat(129),
        ] {
            let err = TableName::new(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidName { kind: "table", .. }),
                "{bad}"
            );
        }
        let r = TableRef::new("public", "t").unwrap();
        assert_eq!(r.to_string(), "public.t");
        assert!(serde_json::from_str::<TableName>("\"a/b\"").is_err());
    }
}
