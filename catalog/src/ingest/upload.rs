//! [`Catalog::ingest_upload`]: a file arriving as a stream of bytes, spooled, hashed and — for
//! CSV and NDJSON — parsed and written while it arrives (see the module docs of [`super`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Scope, ScopedJoinHandle};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::csv::{CsvScan, Ragged, decode_piece, decoding_threads};
use super::json::{JsonScan, decode_speculative};
use super::spool::Spool;
use super::{
    FileFormat, FileIngest, Inferred, IngestOutcome, Piece, invalid, read_batches, with_overrides,
};
use crate::catalog::{Catalog, WriteMode, WrittenFiles};
use crate::error::{Error, Result};
use crate::manifest::SourceFile;
use crate::name::TableRef;

/// What [`Catalog::ingest_upload`] did, with the upload's size and content hash.
#[derive(Debug, Clone)]
pub struct IngestReport {
    /// Committed, or unchanged.
    pub outcome: IngestOutcome,
    /// SHA-256 of the bytes received (lowercase hex).
    pub sha256: String,
    /// Bytes received.
    pub bytes: u64,
    /// CSV and NDJSON: whether the schema taken from the first piece held for the whole file,
    /// so the file was decoded once, while it arrived (false: decoded again after the upload;
    /// always false for Parquet).
    pub streamed: bool,
}

/// Chunks of the upload in flight between the network and the scan.
const CHUNKS_IN_FLIGHT: usize = 8;

impl Catalog {
    /// Ingests a file arriving as `upload` (its bytes in order; an `Err` item aborts the
    /// ingest, committing nothing) into `table` as one new version. CSV and NDJSON are parsed
    /// and written while they arrive; Parquet once it has arrived (see the module docs). `check` runs
    /// on the version about to be published (primary keys), and [`WriteMode::Upsert`] replaces
    /// stored rows by key. The upload is spooled to a temporary file, removed afterwards.
    ///
    /// # Errors
    /// [`Error::InvalidData`] naming the file (and line and column where known) for unreadable
    /// or malformed input, bad overrides and a failed upload; otherwise as
    /// [`Catalog::write_stream`]. Nothing is committed and no data file is left.
    pub async fn ingest_upload<S>(
        &self,
        table: &TableRef,
        mode: WriteMode,
        spec: FileIngest,
        upload: S,
        check: Option<crate::CommitCheck>,
    ) -> Result<IngestReport>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static,
    {
        let started = std::time::Instant::now();
        let (chunk_tx, chunk_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        // Ends when the upload does or when the scan stops taking chunks.
        tokio::spawn(upload.map(Ok).forward(futures::sink::unfold(
            chunk_tx,
            |tx, chunk| async move {
                tx.send(chunk).await.map_err(|_| ())?;
                Ok::<_, ()>(tx)
            },
        )));
        let (schema_tx, schema_rx) = oneshot::channel();
        let (batch_tx, batch_rx) = mpsc::channel(2);
        let receive_spec = spec.clone();
        let receiving = tokio::task::spawn_blocking(move || {
            let speculation = Speculation {
                schema: schema_tx,
                batches: batch_tx,
            };
            receive(chunk_rx, &receive_spec, speculation)
        });
        let source = SourceFile {
            name: spec.name.clone(),
            sha256: String::new(),
        };
        // While the upload streams: the files written against the first piece's schema.
        let speculative = match schema_rx.await {
            Ok(schema) => Some(
                self.write_files(
                    table,
                    mode,
                    &schema,
                    Some(source.clone()),
                    ReceiverStream::new(batch_rx),
                )
                .await,
            ),
            Err(_) => None,
        };
        let received = receiving.await.expect("upload receiver panicked");
        let received = match received {
            Ok(received) => received,
            Err(e) => {
                self.discard_speculative(speculative).await;
                return Err(e);
            }
        };
        let Received {
            spool,
            sha256,
            bytes,
            scanned,
        } = received;
        let held = scanned.as_ref().is_some_and(|s| s.held);
        let report = |outcome| IngestReport {
            outcome,
            sha256: sha256.clone(),
            bytes,
            streamed: held,
        };
        let known = scanned
            .as_ref()
            .and_then(|s| Some((s.schema.as_ref()?, s.pieces.clone())));
        let inferred = match known {
            Some((schema, pieces)) => with_overrides(schema, &spec, pieces),
            None => {
                let path = spool.path().to_path_buf();
                let infer_spec = spec.clone();
                tokio::task::spawn_blocking(move || super::infer_schema(&path, &infer_spec))
                    .await
                    .expect("schema inference panicked")
            }
        };
        let inferred = match inferred {
            Ok(inferred) => inferred,
            Err(e) => {
                self.discard_speculative(speculative).await;
                return Err(e);
            }
        };
        // After inference, so bad input and bad overrides are reported even for known content.
        if mode != WriteMode::Create {
            match self.table(table).await {
                Ok(head) if head.has_source(&sha256) => {
                    self.discard_speculative(speculative).await;
                    return Ok(report(IngestOutcome::Unchanged { manifest: head }));
                }
                Ok(_) | Err(Error::TableNotFound(_)) => {}
                Err(e) => {
                    self.discard_speculative(speculative).await;
                    return Err(e);
                }
            }
        }
        let (mut written, rows) = match speculative {
            Some(Ok(written)) if held => (written, scanned.as_ref().map_or(0, |s| s.rows)),
            speculative => {
                self.discard_speculative(speculative).await;
                self.write_spooled(table, mode, &spec, inferred, spool.path(), &source)
                    .await?
            }
        };
        let source = SourceFile {
            sha256: sha256.clone(),
            ..source
        };
        for file in &mut written.files {
            file.source = Some(source.clone());
        }
        let manifest = self.commit_files(table, mode, written, check).await?;
        tracing::info!(file = %spec.name, bytes, rows, streamed = held,
            ms = started.elapsed().as_millis(), "file ingested");
        Ok(report(IngestOutcome::Committed { manifest, rows }))
    }
}

impl Catalog {
    /// Writes the spooled file at `path` to new data files: a Parquet file whose columns are
    /// already the table's is stored as it is ([`crate::DataFileWriter::copy_parquet`]: no
    /// decoding); anything else is decoded (CSV in pieces on all cores) and written. Returns
    /// the files and the rows.
    async fn write_spooled(
        &self,
        table: &TableRef,
        mode: WriteMode,
        spec: &FileIngest,
        inferred: Inferred,
        path: &std::path::Path,
        source: &SourceFile,
    ) -> Result<(WrittenFiles, u64)> {
        if let Some(footer) = inferred.as_is.clone() {
            let mut writer = self
                .writer_for(table, mode, &inferred.schema, Some(source.clone()))
                .await?;
            if writer.schema().fields() == inferred.schema.fields() {
                let rows = match writer.copy_parquet(path, &footer).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        writer.abort().await;
                        return Err(e);
                    }
                };
                let schema = Arc::clone(writer.schema());
                let files = writer.finish().await?;
                return Ok((WrittenFiles { schema, files }, rows));
            }
        }
        let inferred = Arc::new(inferred);
        let (tx, rx) = mpsc::channel(2);
        let read_path = path.to_path_buf();
        let read_spec = spec.clone();
        let decode = Arc::clone(&inferred);
        let reader = tokio::task::spawn_blocking(move || {
            let mut rows = 0u64;
            let result = read_batches(&read_path, &read_spec, &decode, &mut |batch| {
                rows += batch.num_rows() as u64;
                tx.blocking_send(Ok(batch)).is_ok()
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
            rows
        });
        let written = self
            .write_files(
                table,
                mode,
                &inferred.schema,
                Some(source.clone()),
                ReceiverStream::new(rx),
            )
            .await;
        let rows = reader.await.expect("file reader panicked");
        Ok((written?, rows))
    }

    /// Deletes the files a speculative decoding wrote.
    async fn discard_speculative(&self, written: Option<Result<WrittenFiles>>) {
        if let Some(Ok(written)) = written {
            self.discard_files(written).await;
        }
    }
}

/// The upload, received.
struct Received {
    spool: Spool,
    sha256: String,
    bytes: u64,
    /// CSV and NDJSON: what the scan learnt.
    scanned: Option<Scanned>,
}

struct Scanned {
    /// The whole file's schema before overrides, when the scan knows it (CSV always; NDJSON
    /// when the speculation held).
    schema: Option<Schema>,
    pieces: Vec<Piece>,
    /// Whether every row was decoded against the first piece's schema, which the whole file
    /// confirmed, and handed to the writer.
    held: bool,
    /// Rows handed to the writer.
    rows: u64,
}

/// Where a scan sends its speculative decoding: the table's schema (once, after the first
/// piece) and then the batches.
struct Speculation {
    schema: oneshot::Sender<SchemaRef>,
    batches: mpsc::Sender<Result<RecordBatch>>,
}

/// The one pass over an upload that cuts it into pieces of whole records while it arrives.
enum Scan {
    Csv(Box<CsvScan>),
    Json(JsonScan),
}

impl Scan {
    /// The scan for `spec`'s format; `None` for Parquet (its footer comes last).
    fn new(spec: &FileIngest) -> Option<Self> {
        match spec.format {
            FileFormat::Csv => Some(Self::Csv(Box::new(CsvScan::new(spec, true)))),
            FileFormat::NdJson => Some(Self::Json(JsonScan::default())),
            FileFormat::Parquet => None,
        }
    }

    fn push(
        &mut self,
        chunk: &[u8],
        ready: &mut Vec<(Piece, Bytes)>,
    ) -> std::result::Result<(), Ragged> {
        match self {
            Self::Csv(scan) => scan.push(chunk, ready),
            Self::Json(scan) => {
                scan.push(chunk, ready);
                Ok(())
            }
        }
    }

    fn finish(&mut self, ready: &mut Vec<(Piece, Bytes)>) -> std::result::Result<(), Ragged> {
        match self {
            Self::Csv(scan) => scan.finish(ready),
            Self::Json(scan) => {
                scan.finish(ready);
                Ok(())
            }
        }
    }

    /// The schema (before overrides) to decode with now: CSV, what every value so far
    /// implies; NDJSON, the first piece's.
    fn schema(&self) -> Option<Schema> {
        match self {
            Self::Csv(scan) => scan.schema(),
            Self::Json(scan) => scan.schema(),
        }
    }

    fn pieces(&self) -> &[Piece] {
        match self {
            Self::Csv(scan) => scan.pieces(),
            Self::Json(scan) => scan.pieces(),
        }
    }

    /// What the scan learnt, once it ended; `held` and `rows` from the speculation.
    fn into_scanned(self, held: bool, rows: u64) -> Result<Scanned> {
        let schema = match &self {
            Self::Csv(scan) => Some(scan.final_schema()?),
            Self::Json(scan) => scan.schema().filter(|_| held),
        };
        Ok(Scanned {
            schema,
            pieces: self.pieces().to_vec(),
            held,
            rows,
        })
    }
}

/// Receives the upload into a spool file, hashing it; a CSV or NDJSON file is scanned on the
/// way and decoded piece by piece on other threads (`speculation`).
fn receive(
    mut chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    spec: &FileIngest,
    speculation: Speculation,
) -> Result<Received> {
    let io = |e: std::io::Error| invalid(spec, format!("spooling the upload: {e}"));
    let mut spool = Spool::new().map_err(io)?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut take = |chunk: std::io::Result<Bytes>, spool: &mut Spool| {
        let chunk = chunk.map_err(|e| invalid(spec, format!("upload failed: {e}")))?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        spool.write(&chunk).map_err(io)?;
        Ok::<_, Error>(chunk)
    };
    let scanned = match Scan::new(spec) {
        Some(mut scan) => {
            let stopped = AtomicBool::new(false);
            let scanned = std::thread::scope(
                |scope| -> Result<std::result::Result<(bool, u64), Ragged>> {
                    let mut decoding = Decoding::start(scope, speculation, spec, &stopped);
                    let mut ready = Vec::new();
                    while let Some(chunk) = chunks.blocking_recv() {
                        let chunk = take(chunk, &mut spool)?;
                        if let Err(ragged) = scan.push(&chunk, &mut ready) {
                            return Ok(Err(ragged));
                        }
                        decoding.offer(&scan, &mut ready);
                    }
                    if let Err(ragged) = scan.finish(&mut ready) {
                        return Ok(Err(ragged));
                    }
                    decoding.offer(&scan, &mut ready);
                    Ok(Ok(decoding.end(&scan)))
                },
            )?;
            let (held, rows) = match scanned {
                Ok(done) => done,
                Err(ragged) => {
                    // The lines up to the record are read back from the spool.
                    spool.readable().map_err(io)?;
                    return Err(ragged.into_error(spool.path(), spec));
                }
            };
            Some(scan.into_scanned(held, rows)?)
        }
        None => {
            while let Some(chunk) = chunks.blocking_recv() {
                take(chunk, &mut spool)?;
            }
            None
        }
    };
    spool.readable().map_err(io)?;
    Ok(Received {
        spool,
        sha256: hex::encode(hasher.finalize()),
        bytes,
        scanned,
    })
}

type Decoded = std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError>;

/// Pieces decoded against the first piece's schema while the scan goes on, and the thread that
/// hands their batches to the writer in file order.
struct Decoding<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    spec: &'env FileIngest,
    first_schema: Option<oneshot::Sender<SchemaRef>>,
    /// The speculative schemas, once taken.
    taken: Option<Arc<Taken>>,
    /// Decoding pieces, oldest first; `None` once the speculation failed (the hand-on thread
    /// then aborts the writer).
    pieces: Option<std::sync::mpsc::SyncSender<InFlight<'scope>>>,
    stopped: &'env AtomicBool,
    hand_on: ScopedJoinHandle<'scope, (bool, u64)>,
}

enum InFlight<'scope> {
    Decoding(ScopedJoinHandle<'scope, Decoded>),
    /// The scan ended and confirmed the schema: the writer may finish.
    End,
}

impl<'scope, 'env> Decoding<'scope, 'env> {
    fn start(
        scope: &'scope Scope<'scope, 'env>,
        speculation: Speculation,
        spec: &'env FileIngest,
        stopped: &'env AtomicBool,
    ) -> Self {
        // Decoding pieces beyond the oldest; the channel's bound holds the scan back.
        let (tx, rx) = std::sync::mpsc::sync_channel(decoding_threads());
        let batches = speculation.batches;
        let hand_on = scope.spawn(move || hand_on(rx, batches, stopped));
        Self {
            scope,
            spec,
            first_schema: Some(speculation.schema),
            taken: None,
            pieces: Some(tx),
            stopped,
            hand_on,
        }
    }

    /// Starts decoding the `ready` pieces, unless the scan's schema now differs from the
    /// speculative one (then the speculation ends).
    fn offer(&mut self, scan: &Scan, ready: &mut Vec<(Piece, Bytes)>) {
        for (_, bytes) in ready.drain(..) {
            if self.stopped.load(Ordering::Relaxed) {
                self.pieces = None;
            }
            if self.pieces.is_none() {
                return;
            }
            let Some(taken) = self.current(scan) else {
                self.pieces = None;
                return;
            };
            let Some(pieces) = &self.pieces else { return };
            let spec = self.spec;
            let decoding = self.scope.spawn(move || taken.decode(&bytes, spec));
            if pieces.send(InFlight::Decoding(decoding)).is_err() {
                self.pieces = None;
            }
        }
    }

    /// The schemas to decode with now: the first ones taken, while the scan agrees with them.
    fn current(&mut self, scan: &Scan) -> Option<Arc<Taken>> {
        let raw = scan.schema()?;
        let now = with_overrides(&raw, self.spec, Vec::new()).ok()?;
        match &self.taken {
            Some(taken) => (taken.inferred.decode == now.decode).then(|| Arc::clone(taken)),
            None => {
                let taken = Arc::new(Taken {
                    raw: Arc::new(raw),
                    inferred: now,
                });
                if let Some(tx) = self.first_schema.take() {
                    let _ = tx.send(Arc::clone(&taken.inferred.schema));
                }
                self.taken = Some(Arc::clone(&taken));
                Some(taken)
            }
        }
    }

    /// After the scan's end: whether every piece was decoded against the whole file's schema
    /// and handed on, and the rows handed on.
    fn end(mut self, scan: &Scan) -> (bool, u64) {
        if self.current(scan).is_some()
            && let Some(pieces) = self.pieces.take()
        {
            let _ = pieces.send(InFlight::End);
        }
        drop(self.pieces);
        self.hand_on.join().expect("hand-on thread panicked")
    }
}

/// The schemas a speculation decodes with.
struct Taken {
    /// The scan's schema, before overrides (NDJSON: nested).
    raw: SchemaRef,
    /// With overrides: `decode` to decode with, `schema` the table's.
    inferred: Inferred,
}

impl Taken {
    /// Decodes one piece's bytes. NDJSON: only when the piece's own schema merges into `raw`
    /// unchanged ([`decode_speculative`]); a CSV contradiction shows in the scan's schema.
    fn decode(&self, bytes: &[u8], spec: &FileIngest) -> Decoded {
        match spec.format {
            FileFormat::NdJson => decode_speculative(bytes, &self.raw, &self.inferred.decode),
            _ => decode_piece(bytes, &self.inferred.decode, spec),
        }
    }
}

/// Hands the decoded pieces' batches to the writer in order. Ends the writer's stream normally
/// only after [`InFlight::End`]; otherwise (speculation over, decoding failed) sends an error so
/// the writer deletes what it wrote. Returns whether it ended normally, and the rows sent.
fn hand_on(
    pieces: std::sync::mpsc::Receiver<InFlight<'_>>,
    batches: mpsc::Sender<Result<RecordBatch>>,
    stopped: &AtomicBool,
) -> (bool, u64) {
    let mut rows = 0u64;
    let abandon = |rows| {
        stopped.store(true, Ordering::Relaxed);
        let _ = batches.blocking_send(Err(Error::InvalidData {
            location: "speculative decoding".into(),
            message: "superseded by the whole file's schema".into(),
        }));
        (false, rows)
    };
    while let Ok(piece) = pieces.recv() {
        let decoding = match piece {
            InFlight::End => return (true, rows),
            InFlight::Decoding(decoding) => decoding,
        };
        // A decoding error is reported by the second decode, against the whole file's schema.
        let Ok(Ok(decoded)) = decoding.join() else {
            return abandon(rows);
        };
        for batch in decoded {
            rows += batch.num_rows() as u64;
            if batches.blocking_send(Ok(batch)).is_err() {
                return abandon(rows);
            }
        }
    }
    abandon(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageLocation;
    use arrow::datatypes::DataType;

    /// Uploads `text` in chunks of an odd size to a new table `name`: the report and the
    /// table's schema.
    async fn upload(
        catalog: &Catalog,
        name: &str,
        format: FileFormat,
        text: String,
    ) -> (IngestReport, SchemaRef) {
        let chunks: Vec<std::io::Result<Bytes>> = Bytes::from(text)
            .chunks(1_000_003)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let table = TableRef::new("public", name).unwrap();
        let report = catalog
            .ingest_upload(
                &table,
                WriteMode::Create,
                FileIngest::new(name, format),
                futures::stream::iter(chunks),
                None,
            )
            .await
            .unwrap();
        let schema = Arc::clone(&catalog.table(&table).await.unwrap().schema.arrow);
        (report, schema)
    }

    fn rows(report: &IngestReport) -> u64 {
        match &report.outcome {
            IngestOutcome::Committed { rows, .. } => *rows,
            IngestOutcome::Unchanged { .. } => panic!("not committed"),
        }
    }

    /// NDJSON of `rows` lines over several pieces; line `late` (from 1) adds a nested field.
    fn ndjson(rows: usize, late: Option<usize>) -> String {
        let mut text = String::new();
        for i in 1..=rows {
            let extra = if Some(i) == late {
                r#", "user": {"late": "yes"}"#
            } else {
                ""
            };
            let note = "x".repeat(60);
            text.push_str(&format!(
                r#"{{"id": {i}, "ok": {}, "note": "{note}"{extra}}}"#,
                i % 2 == 0
            ));
            text.push('\n');
        }
        assert!(text.len() as u64 > 2 * super::super::CSV_CHUNK_BYTES);
        text
    }

    /// The speculation holds for a file whose later pieces imply the first piece's schema (one
    /// decode, while streaming), and is dropped for one whose last piece adds a field — a
    /// field the speculative decoder would have skipped — which is then decoded again with it.
    #[tokio::test]
    async fn ndjson_streams_when_the_first_piece_schema_holds_and_not_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let location = StorageLocation::open(dir.path().to_str().unwrap()).unwrap();
        let catalog = Catalog::open(location).await.unwrap();
        let (report, schema) =
            upload(&catalog, "same", FileFormat::NdJson, ndjson(400_000, None)).await;
        assert!(report.streamed);
        assert_eq!(rows(&report), 400_000);
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "note", "ok"]);
        assert_eq!(schema.field(2).data_type(), &DataType::Boolean);

        let text = ndjson(400_000, Some(399_990));
        let (report, schema) = upload(&catalog, "late", FileFormat::NdJson, text).await;
        assert!(!report.streamed);
        assert_eq!(rows(&report), 400_000);
        assert_eq!(schema.field(3).name(), "user.late");
    }

    /// CSV: the speculation holds unless a later value changes a column's type.
    #[tokio::test]
    async fn csv_streams_when_the_first_piece_schema_holds_and_not_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let location = StorageLocation::open(dir.path().to_str().unwrap()).unwrap();
        let catalog = Catalog::open(location).await.unwrap();
        let csv = |late: Option<usize>| {
            let mut text = String::from("id,score,note\n");
            for i in 1..=900_000usize {
                let score = if Some(i) == late {
                    "2.5".into()
                } else {
                    i.to_string()
                };
                text.push_str(&format!("{i},{score},note number {i} of the file\n"));
            }
            assert!(text.len() as u64 > 2 * super::super::CSV_CHUNK_BYTES);
            text
        };
        let (report, schema) = upload(&catalog, "same", FileFormat::Csv, csv(None)).await;
        assert!(report.streamed);
        assert_eq!(rows(&report), 900_000);
        assert_eq!(schema.field(1).data_type(), &DataType::Int64);
        let (report, schema) = upload(&catalog, "late", FileFormat::Csv, csv(Some(899_999))).await;
        assert!(!report.streamed);
        assert_eq!(rows(&report), 900_000);
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
    }
}
