//! [`Catalog::ingest_upload`]: a file arriving as a stream of bytes, spooled, hashed and — for
//! CSV — parsed and written while it arrives (see the module docs of [`super`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Scope, ScopedJoinHandle};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::csv::{CsvScan, Ragged, decode_piece, decoding_threads};
use super::spool::Spool;
use super::{FileFormat, FileIngest, IngestOutcome, Piece, invalid, read_batches, with_overrides};
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
    /// CSV: whether the schema taken from the first piece held for the whole file, so the file
    /// was decoded once, while it arrived (false: decoded again after the upload; always
    /// false for other formats).
    pub streamed: bool,
}

/// Chunks of the upload in flight between the network and the scan.
const CHUNKS_IN_FLIGHT: usize = 8;

impl Catalog {
    /// Ingests a file arriving as `upload` (its bytes in order; an `Err` item aborts the
    /// ingest, committing nothing) into `table` as one new version. CSV is parsed and written
    /// while it arrives; other formats once it has arrived (see the module docs). `check` runs
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
        let speculate = spec.format == FileFormat::Csv;
        let receive_spec = spec.clone();
        let receiving = tokio::task::spawn_blocking(move || {
            let speculation = speculate.then_some(Speculation {
                schema: schema_tx,
                batches: batch_tx,
            });
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
            csv,
        } = received;
        let report = |outcome| IngestReport {
            outcome,
            sha256: sha256.clone(),
            bytes,
            streamed: csv.as_ref().is_some_and(|c| c.held),
        };
        let inferred = match &csv {
            Some(scanned) => with_overrides(&scanned.schema, &spec, scanned.pieces.clone()),
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
        let held = csv.as_ref().is_some_and(|c| c.held);
        let (mut written, rows) = match speculative {
            Some(Ok(written)) if held => (written, csv.as_ref().map_or(0, |c| c.rows)),
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
        inferred: super::Inferred,
        path: &std::path::Path,
        source: &SourceFile,
    ) -> Result<(WrittenFiles, u64)> {
        if let Some(footer) = parquet_as_is(path, spec, &inferred) {
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

/// The footer of the Parquet file at `path` when it can be stored as it is: no overrides, and
/// its columns (names, types, nullability) need no normalising.
fn parquet_as_is(
    path: &std::path::Path,
    spec: &FileIngest,
    inferred: &super::Inferred,
) -> Option<Arc<parquet::file::metadata::ParquetMetaData>> {
    if spec.format != FileFormat::Parquet || !spec.overrides.is_empty() {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    (builder.schema().fields() == inferred.schema.fields()).then(|| Arc::clone(builder.metadata()))
}

/// The upload, received.
struct Received {
    spool: Spool,
    sha256: String,
    bytes: u64,
    /// CSV only: what the scan learnt.
    csv: Option<ScannedCsv>,
}

struct ScannedCsv {
    /// The whole file's schema, before overrides.
    schema: arrow::datatypes::Schema,
    pieces: Vec<Piece>,
    /// Whether every row was decoded against the first piece's schema, which the whole file
    /// confirmed, and handed to the writer.
    held: bool,
    /// Rows handed to the writer.
    rows: u64,
}

/// Where a CSV scan sends its speculative decoding: the schema (once, after the first piece
/// or at the end) and then the batches.
struct Speculation {
    schema: oneshot::Sender<SchemaRef>,
    batches: mpsc::Sender<Result<RecordBatch>>,
}

/// Receives the upload into a spool file, hashing it; a CSV file is scanned on the way and,
/// with `speculation`, decoded piece by piece on other threads.
fn receive(
    mut chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    spec: &FileIngest,
    speculation: Option<Speculation>,
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
    let csv = if spec.format == FileFormat::Csv {
        let mut scan = CsvScan::new(spec, speculation.is_some());
        let stopped = AtomicBool::new(false);
        let scanned = std::thread::scope(
            |scope| -> Result<std::result::Result<(bool, u64), Ragged>> {
                let mut decoding = speculation.map(|s| Decoding::start(scope, s, spec, &stopped));
                let mut ready = Vec::new();
                while let Some(chunk) = chunks.blocking_recv() {
                    let chunk = take(chunk, &mut spool)?;
                    if let Err(ragged) = scan.push(&chunk, &mut ready) {
                        return Ok(Err(ragged));
                    }
                    if let Some(decoding) = &mut decoding {
                        decoding.offer(&scan, &mut ready);
                    }
                    ready.clear();
                }
                if let Err(ragged) = scan.finish(&mut ready) {
                    return Ok(Err(ragged));
                }
                Ok(Ok(match decoding {
                    Some(mut decoding) => {
                        decoding.offer(&scan, &mut ready);
                        decoding.end(&scan)
                    }
                    None => (false, 0),
                }))
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
        Some(ScannedCsv {
            schema: scan.final_schema()?,
            pieces: scan.pieces().to_vec(),
            held,
            rows,
        })
    } else {
        while let Some(chunk) = chunks.blocking_recv() {
            take(chunk, &mut spool)?;
        }
        None
    };
    spool.finish().map_err(io)?;
    Ok(Received {
        spool,
        sha256: hex::encode(hasher.finalize()),
        bytes,
        csv,
    })
}

type Decoded = std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError>;

/// Pieces decoded against the first piece's schema while the scan goes on, and the thread that
/// hands their batches to the writer in file order.
struct Decoding<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    spec: &'env FileIngest,
    first_schema: Option<oneshot::Sender<SchemaRef>>,
    /// The speculative schema, once taken.
    schema: Option<SchemaRef>,
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
            schema: None,
            pieces: Some(tx),
            stopped,
            hand_on,
        }
    }

    /// Starts decoding the `ready` pieces, unless the scan's schema now differs from the
    /// speculative one (then the speculation ends).
    fn offer(&mut self, scan: &CsvScan, ready: &mut Vec<(Piece, Bytes)>) {
        for (_, bytes) in ready.drain(..) {
            if self.stopped.load(Ordering::Relaxed) {
                self.pieces = None;
            }
            if self.pieces.is_none() {
                return;
            }
            let Some(schema) = self.current(scan) else {
                self.pieces = None;
                return;
            };
            let Some(pieces) = &self.pieces else { return };
            let spec = self.spec;
            let decoding = self
                .scope
                .spawn(move || decode_piece(&bytes, &schema, spec));
            if pieces.send(InFlight::Decoding(decoding)).is_err() {
                self.pieces = None;
            }
        }
    }

    /// The schema to decode with now: the first one taken, while the scan agrees with it.
    fn current(&mut self, scan: &CsvScan) -> Option<SchemaRef> {
        let now = with_overrides(&scan.schema()?, self.spec, Vec::new())
            .ok()?
            .decode;
        match &self.schema {
            Some(schema) => (*schema == now).then(|| Arc::clone(schema)),
            None => {
                self.schema = Some(Arc::clone(&now));
                if let Some(tx) = self.first_schema.take() {
                    let _ = tx.send(Arc::clone(&now));
                }
                Some(now)
            }
        }
    }

    /// After the scan's end: whether every piece was decoded against the whole file's schema
    /// and handed on, and the rows handed on.
    fn end(mut self, scan: &CsvScan) -> (bool, u64) {
        if self.current(scan).is_some()
            && let Some(pieces) = self.pieces.take()
        {
            let _ = pieces.send(InFlight::End);
        }
        self.pieces = None;
        self.hand_on.join().expect("CSV hand-on thread panicked")
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
            location: "speculative CSV decoding".into(),
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
