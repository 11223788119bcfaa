"""Retrieval benchmark: vector, BM25 and hybrid search over a real documentation corpus.

Corpus: the HTML pages of the "Python HOWTOs" (`howto/*.html`) as Debian's python3.11-doc
package ships them, ingested unchanged with `lakehouse ingest --embed` (text extracted by the
server, chunked, embedded by the real MiniLM model server), then `CREATE INDEX ... USING FTS`.

Queries and relevance: every h2/h3 section title of the pages that occurs once in the corpus
is a query. The section is located in the ingested text of its page (the page's text is put
back together from its chunks by their byte offsets; the title is found as its heading, which
Sphinx ends with a permalink sign) and runs to the next heading. A retrieved chunk is relevant
when it is a chunk of that page overlapping that range. For k in 1, 5, 10: recall@k is the share
of queries with a relevant chunk among the first k; MRR is the mean of 1/rank of the first
relevant chunk within the top 10 (0 when none).

Reranking: on an evenly spaced sample of the queries (--rerank-queries), vector and hybrid
search again with the `rerank` option (--rerank-candidates candidates rated by the test model
server's chat model, SmolLM2-135M), beside the same queries without it.

Prints Markdown tables (and writes them to --out) with the ingest throughput.
"""

import argparse
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
os.environ.setdefault("LAKEHOUSE_BIN", "")
import conftest  # noqa: E402

K = 10
METHODS = ["vector_search", "text_search", "hybrid_search"]
LABELS = {"vector_search": "vector (MiniLM, cosine)", "text_search": "BM25 (Lance FTS)",
          "hybrid_search": "hybrid (RRF)"}
# Sphinx ends each heading with a permalink anchor "¶", which the server's HTML-to-text
# rendering (html2text) keeps as a link: "Title[¶]".
PERMALINKS = ["[¶]", "¶"]


class Headings(html.parser.HTMLParser):
    """The text of every h2/h3 heading, in document order, without the permalink anchor."""

    def __init__(self):
        super().__init__()
        self.titles, self._depth, self._text, self._skip = [], 0, [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "h3"):
            self._depth, self._text = 1, []
        elif self._depth and tag == "a" and ("class", "headerlink") in attrs:
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self._depth:
            self._depth = 0
            title = re.sub(r"\s+", " ", "".join(self._text)).strip()
            if title:
                self.titles.append(title)
        elif tag == "a" and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if self._depth and not self._skip:
            self._text.append(data)


def page_text(rows):
    """A page's text put back together from its chunks (byte offsets); gaps are spaces."""
    size = max(end for _, start, end, _ in rows)
    buf = bytearray(b" " * size)
    for _, start, end, text in rows:
        buf[start:end] = text.encode()
    return buf.decode(errors="replace")


def sections(titles, text):
    """(title, start, end) byte ranges of the titles found as headings in `text`, in order."""
    found, pos = [], 0
    data = text.encode()
    for title in titles:
        # The heading is the title followed by the permalink sign.
        hits = [i for i in (data.find((title + p).encode(), pos) for p in PERMALINKS) if i >= 0]
        if not hits:
            continue
        i = min(hits)
        found.append([title, i])
        pos = i + 1
    return [(t, s, found[n + 1][1] if n + 1 < len(found) else len(data))
            for n, (t, s) in enumerate(found)]


def cpu_seconds(pid):
    """User + system CPU seconds the process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(args, server, processes):
    """`lakehouse ingest --embed` of the corpus into `howto` on `server`: (wall seconds, CPU
    seconds each of `processes` spent meanwhile). Exits on failure."""
    cpu_before = [cpu_seconds(p.pid) for p in processes]
    started = time.monotonic()
    out = subprocess.run(
        [args.bin, "ingest", "--server", server.url, "--table", "howto", "--embed",
         "--chunk-size", str(args.chunk_size), "--chunk-overlap", str(args.chunk_overlap),
         str(args.corpus)], capture_output=True, text=True)
    seconds = time.monotonic() - started
    cpu = [cpu_seconds(p.pid) - b for p, b in zip(processes, cpu_before)]
    if out.returncode != 0:
        sys.exit(f"ingest failed:\n{out.stderr}")
    print(out.stdout.strip().splitlines()[-1], file=sys.stderr)
    return seconds, cpu


def evaluate(cur, method, queries, options=""):
    """(rank of the first relevant chunk or None, milliseconds) of each query's top K by
    `method` with the JSON `options`."""
    ranks, millis = [], []
    for title, page, start, end in queries:
        t0 = time.monotonic()
        quoted = title.replace("'", "''")
        extra = f", '{options}'" if options else ""
        cur.execute(f"SELECT doc_id, byte_start, byte_end FROM {method}("
                    f"'howto', '{quoted}', {K}{extra})")
        hits = cur.fetchall()
        millis.append((time.monotonic() - t0) * 1000)
        ranks.append(next((i + 1 for i, (doc, s, e) in enumerate(hits)
                           if doc == page and s < end and e > start), None))
    return ranks, millis


def table_row(label, ranks, millis):
    """A Markdown table row: recall@1/5/10, MRR@10, p50 and p99 milliseconds."""
    n, millis = len(ranks), sorted(millis)
    recall = [sum(1 for r in ranks if r is not None and r <= k) / n for k in (1, 5, 10)]
    mrr = sum(1 / r for r in ranks if r is not None) / n
    p50, p99 = millis[n // 2], millis[min(n - 1, int(n * 0.99))]
    return (f"| {label} | {recall[0]:.3f} | {recall[1]:.3f} | {recall[2]:.3f} | {mrr:.3f} | "
            f"{p50:.0f} | {p99:.0f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--corpus", required=True, type=Path)
    ap.add_argument("--package", default="python3.11-doc")
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--chunk-overlap", type=int, default=200)
    ap.add_argument("--rerank-queries", type=int, default=30,
                    help="queries of the rerank rows (an evenly spaced sample; 0: none)")
    ap.add_argument("--rerank-candidates", type=int, default=20,
                    help="candidates the chat model rates per reranked query (>= 10)")
    args = ap.parse_args()
    conftest.BIN = args.bin

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    pages = sorted(p.name for p in args.corpus.glob("*.html"))
    models = conftest.ModelServer()
    config = args.work / "lakehouse.toml"
    config.write_text(models.embedding_toml() + models.chat_toml(timeout_ms=600000))
    server = conftest.LakehouseServer(args.work / "data", "--config", str(config),
                                      log_path=args.work / "server.log")
    try:
        ingest_s, cpu = ingest(args, server, (models.proc, server.proc))

        with server.connect() as conn, conn.cursor() as cur:
            started = time.monotonic()
            cur.execute("CREATE INDEX howto_text ON howto USING FTS (text)")
            cur.fetchall()
            fts_s = time.monotonic() - started
            cur.execute("SELECT doc_id, byte_start, byte_end, text FROM howto")
            rows = cur.fetchall()
            by_page = {}
            for row in rows:
                by_page.setdefault(row[0], []).append(row)
            # Queries: section titles found in their page, unique across the corpus.
            candidates = []
            for page in pages:
                parser = Headings()
                parser.feed((args.corpus / page).read_text(encoding="utf-8"))
                text = page_text(by_page[page])
                candidates += [(title, page, s, e) for title, s, e in sections(parser.titles, text)]
            counts = {}
            for title, *_ in candidates:
                counts[title.lower()] = counts.get(title.lower(), 0) + 1
            queries = [c for c in candidates if counts[c[0].lower()] == 1]

            results = {method: evaluate(cur, method, queries) for method in METHODS}
            step = max(1, len(queries) // max(1, args.rerank_queries))
            sample = list(range(0, len(queries), step))[:args.rerank_queries]
            options = json.dumps({"rerank": {"candidates": args.rerank_candidates}})
            reranked = {}
            for method in ["vector_search", "hybrid_search"] if sample else []:
                print(f"reranking {len(sample)} queries with {method}", file=sys.stderr)
                reranked[method] = evaluate(cur, method, [queries[i] for i in sample], options)
    finally:
        server.stop()
        models.stop()

    # The same ingest with MiniLM in process (`provider = "local"`, candle) on a fresh server.
    local = args.work / "local.toml"
    local.write_text(f'[embedding]\ndefault_model = "minilm"\n[embedding.models.minilm]\n'
                     f'provider = "local"\npath = "{models.models}/all-MiniLM-L6-v2"\n'
                     f'concurrency = 1\n')
    server = conftest.LakehouseServer(args.work / "data-local", "--config", str(local),
                                      log_path=args.work / "server-local.log")
    try:
        local_s, (local_cpu,) = ingest(args, server, (server.proc,))
    finally:
        server.stop()

    documents, chunks = len(pages), len(rows)
    lines = [
        f"Corpus: {documents} HTML pages of Debian's {args.package} (`howto/`), "
        f"{sum((args.corpus / p).stat().st_size for p in pages) / 1e6:.1f} MB of HTML, ingested "
        f"as {chunks} chunks (size {args.chunk_size}, overlap {args.chunk_overlap} characters) "
        f"embedded with all-MiniLM-L6-v2 (384-d) by the test model server (llama.cpp, one "
        f"thread).",
        f"Queries: {len(queries)} section titles (h2/h3 found as headings and unique in the "
        f"corpus, of {len(candidates)}); relevant = a chunk of that section.",
        "",
        "| search | recall@1 | recall@5 | recall@10 | MRR@10 | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [table_row(LABELS[method], *results[method]) for method in METHODS]
    if reranked:
        lines += [
            "",
            f"Reranked: {len(sample)} of the queries (every {step}th), the top "
            f"{args.rerank_candidates} candidates of each rated by SmolLM2-135M-Instruct "
            f"(Q4_1, the test model server: one llama.cpp thread, one call at a time) with "
            f"`'{options}'`; beside them the same queries without reranking.",
            "",
            "| search | recall@1 | recall@5 | recall@10 | MRR@10 | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, (ranks, millis) in reranked.items():
            first = results[method]
            lines.append(table_row(LABELS[method], [first[0][i] for i in sample],
                                   [first[1][i] for i in sample]))
            lines.append(table_row(LABELS[method] + " + rerank", ranks, millis))
    lines += [
        "",
        "| ingest | documents | chunks | seconds | documents/s | chunks/s |",
        "|---|---|---|---|---|---|",
        f"| `lakehouse ingest --embed` (extract, chunk, embed, commit) | {documents} | {chunks} | "
        f"{ingest_s:.1f} | {documents / ingest_s:.2f} | {chunks / ingest_s:.1f} |",
        f"| the same, MiniLM in process (`provider = \"local\"`, candle) | {documents} | "
        f"{chunks} | {local_s:.1f} | {documents / local_s:.2f} | {chunks / local_s:.1f} |",
        f"| `CREATE INDEX ... USING FTS (text)` | | {chunks} | {fts_s:.1f} | | |",
        "",
        f"CPU time during the ingest: model server {cpu[0]:.1f} s, Lakehouse server "
        f"{cpu[1]:.1f} s, of {ingest_s:.1f} s wall clock; in process: Lakehouse server "
        f"{local_cpu:.1f} s of {local_s:.1f} s on {os.cpu_count()} cores.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text("# Retrieval benchmark (bench/retrieval/run.sh)\n\n" + table + "\n")


if __name__ == "__main__":
    main()
