// A real model server for tests and offline use: llama.cpp (via node-llama-cpp's prebuilt
// binaries) behind the Ollama and OpenAI wire formats, with one CPU thread per model.
//
//   node server.mjs --port 0 --embed all-minilm=/path/minilm.gguf [--chat smollm2=/path/x.gguf]
//                   [--exit-with-parent]
//
// Prints `listening on http://127.0.0.1:PORT` when ready. Endpoints:
//   GET  /api/tags, /v1/models                      the loaded models
//   POST /api/embed       {model, input}            -> {model, embeddings: [[f32]]}  (L2-normalised)
//   POST /v1/embeddings   {model, input}            -> {data: [{index, embedding}], ...}
//   POST /api/chat        {model, messages, options: {temperature, seed, num_predict}}
//   POST /v1/chat/completions {model, messages, temperature, seed, max_tokens}
//   POST /admin/faults    {status, count, delay_ms} the next `count` model calls answer `status`
//                         (e.g. 429, 503) or wait `delay_ms` first: test hooks for retries/timeouts.
//   GET  /admin/stats     {embed_requests, embed_inputs, chat_requests} answered since start: test
//                         hooks that count how often a query called the models.
import http from "node:http";
import { getLlama, LlamaChatSession } from "node-llama-cpp";

const args = process.argv.slice(2);
const option = (name) => {
  const values = [];
  args.forEach((a, i) => { if (a === name && i + 1 < args.length) values.push(args[i + 1]); });
  return values;
};
const port = Number(option("--port")[0] ?? 11434);
const parseModels = (flag) => option(flag).map((spec) => {
  const eq = spec.indexOf("=");
  if (eq < 1) throw new Error(`${flag} expects NAME=PATH, got ${spec}`);
  return { name: spec.slice(0, eq), path: spec.slice(eq + 1) };
});

const llama = await getLlama({ gpu: false, build: "never" });
const embedders = new Map();
for (const { name, path } of parseModels("--embed")) {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const context = await model.createEmbeddingContext({ threads: 1 });
  embedders.set(name, { model, context, dimension: model.embeddingVectorSize });
}
const chats = new Map();
for (const { name, path } of parseModels("--chat")) {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  chats.set(name, { model });
}

// One model call at a time (llama.cpp gets exactly one thread on these machines).
let queue = Promise.resolve();
const serially = (work) => {
  const result = queue.then(work, work);
  queue = result.catch(() => {});
  return result;
};

let faults = { status: 0, count: 0, delay_ms: 0 };

async function embed(name, input) {
  const embedder = embedders.get(name);
  if (!embedder) return null;
  const texts = Array.isArray(input) ? input : [input];
  return serially(async () => {
    const out = [];
    for (const text of texts) {
      const { vector } = await embedder.context.getEmbeddingFor(String(text));
      const norm = Math.sqrt(vector.reduce((s, v) => s + v * v, 0)) || 1;
      out.push(Array.from(vector, (v) => v / norm));
    }
    return out;
  });
}

async function chat(name, messages, { temperature = 0, seed = 0, maxTokens = 256 }) {
  const entry = chats.get(name);
  if (!entry) return null;
  return serially(async () => {
    const context = await entry.model.createContext({ threads: 1, contextSize: 4096 });
    try {
      const system = messages.filter((m) => m.role === "system").map((m) => m.content).join("\n");
      const turns = messages.filter((m) => m.role !== "system");
      const session = new LlamaChatSession({
        contextSequence: context.getSequence(),
        systemPrompt: system || undefined,
      });
      const history = session.getChatHistory();
      for (const m of turns.slice(0, -1)) {
        history.push(m.role === "user" ? { type: "user", text: m.content }
          : { type: "model", response: [m.content] });
      }
      session.setChatHistory(history);
      const last = turns.at(-1)?.content ?? "";
      return await session.prompt(last, { temperature, seed, maxTokens });
    } finally {
      await context.dispose();
    }
  });
}

const send = (res, status, body) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};
const readJson = (req) => new Promise((resolve, reject) => {
  let data = "";
  req.on("data", (chunk) => { data += chunk; });
  req.on("end", () => { try { resolve(data ? JSON.parse(data) : {}); } catch (e) { reject(e); } });
});
const stats = { embed_requests: 0, embed_inputs: 0, chat_requests: 0 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const modelList = () => [...embedders.keys(), ...chats.keys()];

const server = http.createServer(async (req, res) => {
  try {
    const url = req.url.split("?")[0];
    if (req.method === "GET" && url === "/api/tags") {
      return send(res, 200, { models: modelList().map((name) => ({ name, model: name })) });
    }
    if (req.method === "GET" && url === "/v1/models") {
      return send(res, 200, { object: "list", data: modelList().map((id) => ({ id, object: "model" })) });
    }
    if (req.method === "GET" && url === "/admin/stats") return send(res, 200, stats);
    if (req.method !== "POST") return send(res, 404, { error: `no route ${req.method} ${url}` });
    const body = await readJson(req);
    if (url === "/admin/faults") {
      faults = { status: body.status ?? 0, count: body.count ?? 0, delay_ms: body.delay_ms ?? 0 };
      return send(res, 200, faults);
    }
    if (faults.count > 0) {
      faults.count -= 1;
      if (faults.delay_ms) await sleep(faults.delay_ms);
      if (faults.status) return send(res, faults.status, { error: `injected fault ${faults.status}` });
    }
    const missing = () => send(res, 404, { error: `model '${body.model}' not found` });
    if (url === "/api/embed" || url === "/v1/embeddings") {
      stats.embed_requests += 1;
      stats.embed_inputs += Array.isArray(body.input) ? body.input.length : 1;
    }
    if (url === "/api/chat" || url === "/v1/chat/completions") stats.chat_requests += 1;
    if (url === "/api/embed") {
      const embeddings = await embed(body.model, body.input ?? "");
      return embeddings ? send(res, 200, { model: body.model, embeddings }) : missing();
    }
    if (url === "/v1/embeddings") {
      const embeddings = await embed(body.model, body.input ?? "");
      if (!embeddings) return missing();
      return send(res, 200, {
        object: "list", model: body.model,
        data: embeddings.map((embedding, index) => ({ object: "embedding", index, embedding })),
        usage: { prompt_tokens: 0, total_tokens: 0 },
      });
    }
    if (url === "/api/chat") {
      const o = body.options ?? {};
      const text = await chat(body.model, body.messages ?? [],
        { temperature: o.temperature, seed: o.seed, maxTokens: o.num_predict });
      if (text === null) return missing();
      return send(res, 200, { model: body.model, message: { role: "assistant", content: text }, done: true });
    }
    if (url === "/v1/chat/completions") {
      const text = await chat(body.model, body.messages ?? [],
        { temperature: body.temperature, seed: body.seed, maxTokens: body.max_tokens });
      if (text === null) return missing();
      return send(res, 200, {
        object: "chat.completion", model: body.model,
        choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
      });
    }
    return send(res, 404, { error: `no route POST ${url}` });
  } catch (e) {
    send(res, 500, { error: String(e?.message ?? e) });
  }
});

server.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
if (args.includes("--exit-with-parent")) {
  // The parent holds our stdin open; when it exits, stdin closes and so do we.
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}
process.on("SIGTERM", () => process.exit(0));
