// The page as a person meets it, in real headless Chromium: WebGPU on SwiftShader, and the CPU
// fallback when the browser gives no adapter. Run by scripts/test.sh after scripts/build-web.
//   node --test tests/e2e/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DIST = join(ROOT, "dist");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const BASE_FLAGS = [
  "--no-sandbox", "--disable-gpu-sandbox", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
];
const WEBGPU_FLAGS = [
  "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
];
const TYPES = {
  ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css",
  ".json": "application/json", ".safetensors": "application/octet-stream",
};

let server, base;

before(async () => {
  await stat(join(DIST, "pkg", "coconut_web_bg.wasm")).catch(() => {
    throw new Error("dist/ is not built: run scripts/build-web (the README's test command does)");
  });
  server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^\/+/, "");
    const file = join(DIST, path === "" ? "index.html" : path);
    if (!file.startsWith(DIST)) return res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  base = `http://localhost:${server.address().port}/`;
});

after(() => server?.close());

async function expectedScore() {
  return JSON.parse(await readFile(join(ROOT, "tests/fixtures/gpt2-tiny-expected.json"), "utf8")).score;
}

async function openPage(flags) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...BASE_FLAGS, ...flags] });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(base);
  await page.waitForSelector('#smoke-status[data-status="done"], #smoke-status[data-status="failed"]', { timeout: 180_000 });
  return { browser, page, errors };
}

async function assertMatchesHf(page, errors) {
  await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 30_000 });
  assert.match(await page.textContent('[data-testid="backend-badge"]'), /WebGPU|CPU/);
  const status = await page.textContent("#smoke-status");
  assert.equal(await page.getAttribute("#smoke-status", "data-status"), "done", `${status}\n${errors.join("\n")}`);
  const got = JSON.parse(await page.textContent("#smoke-result"));
  const want = await expectedScore();
  assert.deepEqual(got.tokens, want.tokens, "tokenisation in the page differs from HF's");
  assert.equal(got.logprobs.length, want.logprobs.length);
  const worst = Math.max(...got.logprobs.map((v, i) => Math.abs(v - want.logprobs[i])));
  assert.ok(worst <= 1e-4, `page log-probs differ from HF by ${worst}`);
}

test("WebGPU: the page runs the imported GPT-2 on WebGPU and matches HuggingFace", { timeout: 300_000 }, async () => {
  const { browser, page, errors } = await openPage(WEBGPU_FLAGS);
  try {
    assert.match(await page.textContent("#backend"), /WebGPU/, `backend badge: ${errors.join("\n")}`);
    assert.equal(await page.$("#fallback-reason"), null);
    await assertMatchesHf(page, errors);
  } finally {
    await browser.close();
  }
});

test("no WebGPU adapter: the page falls back to the CPU backend, says so, and still matches", { timeout: 300_000 }, async () => {
  const { browser, page, errors } = await openPage([]);
  try {
    assert.match(await page.textContent("#backend"), /CPU/);
    assert.match(await page.textContent("#fallback-reason"), /CPU fallback: .+/);
    await assertMatchesHf(page, errors);
  } finally {
    await browser.close();
  }
});
