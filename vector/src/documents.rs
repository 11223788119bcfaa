//! Documents for retrieval: their text (plain text, Markdown, HTML, PDF) and its chunks.
//!
//! - [`extract_text`]: plain text and Markdown are their own text (UTF-8 required); HTML is
//!   rendered to plain text by `html2text` with its trivial decorator (only the literal text:
//!   no heading marks, link brackets or bullets; no line wrapping; scripts and styles dropped).
//! - [`extract_pages`]: a PDF's text page by page (`pdf-extract` over `lopdf`); encrypted,
//!   unreadable and text-less (scanned, image-only) PDFs are refused with the reason.
//! - [`chunk`]: the text cut into chunks of at most `size` **characters** with up to `overlap`
//!   characters shared by neighbours, on the most natural boundary that fits (`text-splitter`:
//!   paragraphs, then sentences, then words; Markdown also by its structure). Each chunk keeps
//!   its byte range in the text, so `&text[start..end]` is the chunk (before trimming).

use crate::error::{Error, Result};

/// A document format that is chunked as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    /// Plain text (`.txt`, `.text`).
    Text,
    /// Markdown (`.md`, `.markdown`): chunked along its structure.
    Markdown,
    /// HTML (`.html`, `.htm`): rendered to text first.
    Html,
    /// PDF (`.pdf`): its text extracted page by page ([`extract_pages`]); each page is chunked
    /// as plain text.
    Pdf,
}

impl DocumentFormat {
    /// The format a file name's extension says, if it is a document format.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match extension.as_str() {
            "txt" | "text" => Some(Self::Text),
            "md" | "markdown" => Some(Self::Markdown),
            "html" | "htm" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }
}

/// The text of a document of `format` whose bytes are `bytes`; `name` is for errors. A PDF's
/// pages are joined with blank lines ([`extract_pages`] keeps them apart).
///
/// # Errors
/// [`Error::Document`] when plain text or Markdown is not UTF-8 (naming the byte offset), the
/// HTML cannot be rendered, or the PDF cannot be read ([`extract_pages`]).
pub fn extract_text(name: &str, bytes: &[u8], format: DocumentFormat) -> Result<String> {
    match format {
        DocumentFormat::Pdf => Ok(extract_pages(name, bytes)?.join("\n\n")),
        DocumentFormat::Text | DocumentFormat::Markdown => std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|e| Error::Document {
                name: name.to_string(),
                message: format!("not UTF-8 text at byte {}", e.valid_up_to()),
            }),
        // The trivial decorator writes the literal text only: no `#` before headings, no
        // brackets around links or image titles, no list bullets.
        DocumentFormat::Html => {
            html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
                .no_link_wrapping()
                .string_from_read(bytes, usize::MAX / 4)
                .map_err(|e| Error::Document {
                    name: name.to_string(),
                    message: format!("cannot read the HTML: {e}"),
                })
        }
    }
}

/// The text of each page of the PDF `bytes`, first page first (`pdf-extract`, which reads the
/// PDF's text operators with `lopdf`; pages whose text cannot be read come back empty); `name`
/// is for errors. CPU-bound: call from a blocking task.
///
/// # Errors
/// [`Error::Document`] naming `name` for an encrypted PDF (one that opens only with a
/// password), a PDF that does not parse (truncated, corrupt), one on which the extractor
/// fails, and one with no text at all (scanned or image-only pages: OCR them first).
pub fn extract_pages(name: &str, bytes: &[u8]) -> Result<Vec<String>> {
    let refuse = |message: String| Error::Document {
        name: name.to_string(),
        message,
    };
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| refuse("cannot read the PDF: the text extractor failed on it".into()))?
        .map_err(|e| match e {
            pdf_extract::OutputError::PdfError(pdf_extract::Error::Decryption(_)) => refuse(
                "the PDF is encrypted and needs a password; decrypt it first \
                 (qpdf --decrypt --password=... in.pdf out.pdf)"
                    .into(),
            ),
            e => refuse(format!("cannot read the PDF: {e}")),
        })?;
    if pages.iter().all(|p| p.trim().is_empty()) {
        return Err(refuse(format!(
            "the PDF has no text on its {} page(s): scanned or image-only pages need OCR first",
            pages.len()
        )));
    }
    Ok(pages)
}

/// How documents are chunked: sizes in characters (Unicode scalar values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpec {
    /// Most characters in a chunk.
    pub size: usize,
    /// Characters neighbouring chunks may share (less than `size`).
    pub overlap: usize,
}

impl Default for ChunkSpec {
    /// 1000 characters (~250 tokens of English) with 200 of overlap.
    fn default() -> Self {
        Self {
            size: 1000,
            overlap: 200,
        }
    }
}

/// One chunk of a document's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position among the document's chunks, from 0.
    pub index: usize,
    /// The PDF page (from 1) the chunk is on; `None` for documents without pages.
    pub page: Option<i32>,
    /// Byte offset of the chunk's first byte in the text (a PDF's: in its page's text).
    pub start: usize,
    /// Byte offset just past the chunk's last byte.
    pub end: usize,
    /// The chunk (`&text[start..end]`).
    pub text: String,
}

/// `text` (a document of `format`) cut into chunks per `spec`, in order; empty text has none.
///
/// # Errors
/// [`Error::Config`] when `size` is 0 or `overlap` is not less than `size`.
pub fn chunk(text: &str, format: DocumentFormat, spec: ChunkSpec) -> Result<Vec<Chunk>> {
    if spec.size == 0 {
        return Err(Error::Config(
            "chunk size must be at least 1 character".into(),
        ));
    }
    let config = text_splitter::ChunkConfig::new(spec.size)
        .with_overlap(spec.overlap)
        .map_err(|e| {
            Error::Config(format!(
                "chunk overlap {} must be less than the chunk size {}: {e}",
                spec.overlap, spec.size
            ))
        })?
        .with_trim(true);
    let pieces: Vec<(usize, &str)> = match format {
        DocumentFormat::Markdown => text_splitter::MarkdownSplitter::new(config)
            .chunk_indices(text)
            .collect(),
        DocumentFormat::Text | DocumentFormat::Html | DocumentFormat::Pdf => {
            text_splitter::TextSplitter::new(config)
                .chunk_indices(text)
                .collect()
        }
    };
    Ok(pieces
        .into_iter()
        .enumerate()
        .map(|(index, (start, piece))| Chunk {
            index,
            page: None,
            start,
            end: start + piece.len(),
            text: piece.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_extensions() {
        assert_eq!(
            DocumentFormat::from_file_name("a/b/Notes.MD"),
            Some(DocumentFormat::Markdown)
        );
        assert_eq!(
            DocumentFormat::from_file_name("index.htm"),
            Some(DocumentFormat::Html)
        );
        assert_eq!(
            DocumentFormat::from_file_name("x.txt"),
            Some(DocumentFormat::Text)
        );
        assert_eq!(DocumentFormat::from_file_name("data.csv"), None);
        assert_eq!(DocumentFormat::from_file_name("README"), None);
    }

    #[test]
    fn chunks_keep_offsets_respect_the_size_and_overlap() {
        let text = "The first paragraph talks about Kubernetes. It has two sentences.\n\n\
                    The second paragraph is about bread. Sourdough needs a starter. \
                    Flour and water feed it.\n\nA third one closes the document.";
        let spec = ChunkSpec {
            size: 80,
            overlap: 30,
        };
        let chunks = chunk(text, DocumentFormat::Text, spec).unwrap();
        assert!(chunks.len() >= 3, "{chunks:?}");
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index, i);
            assert_eq!(&text[c.start..c.end], c.text, "offsets locate the chunk");
            assert!(c.text.chars().count() <= 80, "{c:?}");
            assert_eq!(c.text, c.text.trim(), "trimmed");
        }
        // Chunks cover the text in order, neighbours may overlap but never go backwards.
        assert!(
            chunks
                .windows(2)
                .all(|w| w[0].start < w[1].start && w[0].end <= w[1].end)
        );
        assert!(
            chunks.windows(2).any(|w| w[1].start < w[0].end),
            "some overlap: {chunks:?}"
        );
        assert_eq!(chunks[0].start, 0);
        assert_eq!(chunks.last().unwrap().end, text.len());
        // Natural boundaries: no chunk starts or ends inside a word.
        for c in &chunks {
            let before = text[..c.start].chars().last();
            let after = text[c.end..].chars().next();
            assert!(before.is_none_or(|ch| !ch.is_alphanumeric()), "{c:?}");
            assert!(after.is_none_or(|ch| !ch.is_alphanumeric()), "{c:?}");
        }
    }

    #[test]
    fn html_is_rendered_and_bad_input_is_refused() {
        let html = b"<html><head><title>T</title><style>p{}</style></head><body>\
                     <h1>Install</h1><p>Run <b>make</b> <a href=\"x.html\">first</a>.</p>\
                     </body></html>";
        let text = extract_text("doc.html", html, DocumentFormat::Html).unwrap();
        assert!(
            text.contains("Install") && text.contains("Run make first."),
            "{text}"
        );
        assert!(!text.contains("<p>") && !text.contains("p{}"), "{text}");
        assert!(
            !text.contains('#') && !text.contains('['),
            "no decoration: {text}"
        );

        let err = extract_text("bad.txt", b"ok\xff\xfe", DocumentFormat::Text).unwrap_err();
        assert!(err.to_string().contains("bad.txt"), "{err}");
        assert!(err.to_string().contains("byte 2"), "{err}");
        let err = chunk(
            "x",
            DocumentFormat::Text,
            ChunkSpec {
                size: 10,
                overlap: 10,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
        assert!(
            chunk("", DocumentFormat::Markdown, ChunkSpec::default())
                .unwrap()
                .is_empty()
        );
    }
}
