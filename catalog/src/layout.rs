//! Where everything lives under the storage root. `docs/storage-layout.md` documents the same
//! layout for other tools; keep the two in step.
//!
//! ```text
//! <root>/
//!   _lakehouse/catalog.json                       catalog marker: {"format_version": 1, "name": "lakehouse"}
//!   schemas/<schema>.json                         schema marker (the default schema `public` needs none)
//!   tables/<schema>/<table>/_manifests/<v>.json   manifest of version v, v zero-padded to 20 digits
//!   tables/<schema>/<table>/data/<uuid>.parquet   data files, referenced by manifests
//!   tables/<schema>/<table>/deletes/<uuid>.roaring deletion vectors, referenced by manifests
//! ```

use object_store::path::Path;

use crate::name::{SchemaName, TableRef, Version};

/// Catalog marker object, written once when a catalog is first opened on an empty root.
pub fn catalog_marker() -> Path {
    Path::from("_lakehouse/catalog.json")
}

/// The catalog's id: a UUID written once, when the root is first opened (`_lakehouse/id`).
pub fn catalog_id() -> Path {
    Path::from("_lakehouse/id")
}

/// Prefix of all schema markers.
pub fn schemas_prefix() -> Path {
    Path::from("schemas")
}

/// Marker object of a schema created with `CREATE SCHEMA`.
pub fn schema_marker(schema: &SchemaName) -> Path {
    Path::from_iter(["schemas", &format!("{schema}.json")])
}

/// Prefix under which every table of every schema lives.
pub fn tables_prefix() -> Path {
    Path::from("tables")
}

/// Prefix of the tables of one schema.
pub fn schema_tables_prefix(schema: &SchemaName) -> Path {
    Path::from_iter(["tables", schema.as_str()])
}

/// Prefix of one table (manifests and data).
pub fn table_prefix(table: &TableRef) -> Path {
    Path::from_iter(["tables", table.schema.as_str(), table.table.as_str()])
}

/// Prefix of a table's manifests.
pub fn manifests_prefix(table: &TableRef) -> Path {
    table_prefix(table).join("_manifests")
}

/// Manifest object of one version. The zero padding makes lexical order equal version order, so
/// a listing with an offset finds newer versions.
pub fn manifest_path(table: &TableRef, version: Version) -> Path {
    manifests_prefix(table).join(format!("{:020}.json", version.0))
}

/// Whether `path` names an object that never changes once written: a data file
/// (`tables/<schema>/<table>/data/...`) or a deletion vector (`.../deletes/...`), each written
/// once under a fresh UUID. Caches may keep such objects' bytes without invalidation.
pub fn is_immutable(path: &Path) -> bool {
    let parts: Vec<_> = path.parts().collect();
    parts.len() == 5
        && parts[0].as_ref() == "tables"
        && matches!(parts[3].as_ref(), "data" | "deletes")
}

/// Parses the version out of a manifest object's file name; `None` for any other object.
pub fn parse_manifest_version(path: &Path) -> Option<Version> {
    let name = path.filename()?;
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Version)
}

/// Prefix of a table's data files.
pub fn data_prefix(table: &TableRef) -> Path {
    table_prefix(table).join("data")
}

/// A new, unique data file path for `table`.
pub fn new_data_file(table: &TableRef) -> Path {
    data_prefix(table).join(format!("{}.parquet", uuid::Uuid::new_v4()))
}

/// Prefix of a table's deletion vectors.
pub fn deletes_prefix(table: &TableRef) -> Path {
    table_prefix(table).join("deletes")
}

/// A new, unique deletion-vector path for `table`.
pub fn new_deletion_vector(table: &TableRef) -> Path {
    deletes_prefix(table).join(format!("{}.roaring", uuid::Uuid::new_v4()))
}

/// A new, unique directory for the Lance dataset of `table`:
/// `tables/<schema>/<table>/lance/<uuid>` (unique so a re-created table never meets the files
/// of a dropped one).
pub fn new_lance_location(table: &TableRef) -> Path {
    table_prefix(table)
        .join("lance")
        .join(uuid::Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_round_trip_and_sort() {
        let t = TableRef::new("public", "orders").unwrap();
        let p = manifest_path(&t, Version(42));
        assert_eq!(
            p.as_ref(),
            "tables/public/orders/_manifests/00000000000000000042.json"
        );
        assert_eq!(parse_manifest_version(&p), Some(Version(42)));
        assert!(manifest_path(&t, Version(9)).as_ref() < manifest_path(&t, Version(10)).as_ref());
        assert_eq!(parse_manifest_version(&Path::from("x/42.json")), None);
        assert_eq!(
            parse_manifest_version(&Path::from("x/00000000000000000042.json#1")),
            None
        );
    }
}
