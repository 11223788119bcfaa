//! The real model server (scripts/model-server: llama.cpp behind the Ollama and OpenAI APIs)
//! for tests: one shared instance per test process, or dedicated ones a test may stop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The embedding model every model server serves: all-MiniLM-L6-v2, 384-d.
pub const EMBED_MODEL: &str = "all-minilm";
/// Its dimension.
pub const EMBED_DIMENSION: usize = 384;
/// The chat model every model server serves: SmolLM2-135M-Instruct (Q4_1).
pub const CHAT_MODEL: &str = "smollm2";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Runs scripts/model-server/setup.sh (installs once, then returns at once); the models dir.
fn models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let output = Command::new(repo_root().join("scripts/model-server/setup.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/model-server/setup.sh");
        assert!(
            output.status.success(),
            "scripts/model-server/setup.sh failed"
        );
        PathBuf::from(String::from_utf8(output.stdout).expect("utf-8").trim())
    })
    .clone()
}

/// A running model server process.
pub struct ModelServer {
    url: String,
    child: Option<Child>,
    // Held open: the server exits when it closes (when this process ends).
    _stdin: Option<ChildStdin>,
}

impl ModelServer {
    /// The server shared by all tests of this process (started on first use).
    pub fn shared() -> &'static ModelServer {
        static SHARED: OnceLock<ModelServer> = OnceLock::new();
        SHARED.get_or_init(ModelServer::start)
    }

    /// A dedicated server, for tests that stop it or inject faults.
    pub fn start() -> ModelServer {
        let models = models_dir();
        let log = tempfile::Builder::new()
            .prefix("model-server-")
            .suffix(".log")
            .tempfile()
            .expect("log file")
            .keep()
            .expect("keep log")
            .0;
        let mut child = Command::new("node")
            .arg(repo_root().join("scripts/model-server/server.mjs"))
            .args(["--port", "0", "--exit-with-parent", "--embed"])
            .arg(format!(
                "{EMBED_MODEL}={}",
                models.join("minilm.gguf").display()
            ))
            .arg("--chat")
            .arg(format!(
                "{CHAT_MODEL}={}",
                models.join("smollm2-135m.gguf").display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start node scripts/model-server/server.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("model server did not start within 120 s");
        ModelServer {
            url,
            _stdin: child.stdin.take(),
            child: Some(child),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Makes the next `count` model calls answer HTTP `status` (0: answer normally) after
    /// waiting `delay_ms`.
    pub async fn inject_faults(&self, status: u16, count: u32, delay_ms: u64) {
        let body = format!(r#"{{"status":{status},"count":{count},"delay_ms":{delay_ms}}}"#);
        let response = reqwest::Client::new()
            .post(format!("{}/admin/faults", self.url))
            .body(body)
            .send()
            .await
            .expect("POST /admin/faults");
        assert!(response.status().is_success());
    }

    /// `(embed requests, chat requests)` the server answered since it started.
    pub async fn calls(&self) -> (u64, u64) {
        let stats: serde_json::Value = reqwest::get(format!("{}/admin/stats", self.url))
            .await
            .expect("GET /admin/stats")
            .json()
            .await
            .expect("stats JSON");
        let count = |key: &str| stats[key].as_u64().expect("a count");
        (count("embed_requests"), count("chat_requests"))
    }

    /// Stops the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The MiniLM model of `server` as an Ollama embedding-model config (384-d, defaults).
pub fn minilm_config(server: &ModelServer) -> lakehouse_vector::embedding::EmbeddingModelConfig {
    lakehouse_vector::embedding::EmbeddingModelConfig::new(
        lakehouse_vector::embedding::ProviderKind::Ollama,
        server.url(),
        EMBED_MODEL,
        EMBED_DIMENSION,
    )
}

/// The SmolLM2 model of `server` as an Ollama chat-model config (temperature 0, defaults).
pub fn smollm2_config(server: &ModelServer) -> lakehouse_vector::chat::ChatModelConfig {
    lakehouse_vector::chat::ChatModelConfig::new(
        lakehouse_vector::embedding::ProviderKind::Ollama,
        server.url(),
        CHAT_MODEL,
    )
}

/// The MiniLM vectors of `texts` from the shared server, in order.
pub async fn minilm_vectors(texts: &[String]) -> Vec<Vec<f32>> {
    let embedder =
        lakehouse_vector::embedding::Embedder::new("minilm", minilm_config(ModelServer::shared()))
            .expect("embedder");
    embedder
        .embed(texts)
        .await
        .expect("embeddings")
        .iter()
        .map(|v| v.to_vec())
        .collect()
}
