// The page as a person meets it, in real headless Chromium: WebGPU on SwiftShader, and the CPU
// fallback when the browser gives no adapter. The page runs the shipped model
// (static/models/prosqa-coconut) in its Web Worker; answers and node values are compared with the
// native `coconut` binary on the same checkpoint. Run by scripts/test.sh after scripts/build-web:
//   node --test --test-concurrency=1 tests/e2e/
// Screenshots go to tests/e2e/artifacts/ (kept as test artifacts, not committed).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { execFileSync } from "node:child_process";
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DIST = join(ROOT, "dist");
const ARTIFACTS = join(ROOT, "tests/e2e/artifacts");
const MODEL = join(ROOT, "static/models/prosqa-coconut");
const COT_MODEL = join(ROOT, "static/models/prosqa-cot");
// The flagship run's committed checkpoint: rotary positions (the shipped models have learned ones).
const FLAGSHIP = join(ROOT, "checkpoints/prosqa-page-coconut-search/last");
const COCONUT = join(process.env.CARGO_TARGET_DIR || join(ROOT, "target"), "release", "coconut");
const VALID = join(ROOT, "../shared/prosqa/prosqa_valid.json");
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
const K = 6;

let server, base;
const requests = [];

before(async () => {
  await stat(join(DIST, "pkg", "coconut_web_bg.wasm")).catch(() => {
    throw new Error("dist/ is not built: run scripts/build-web (the README's test command does)");
  });
  await stat(COCONUT).catch(() => {
    throw new Error(`${COCONUT} is missing: the README's test command builds it (cargo test --release)`);
  });
  await mkdir(ARTIFACTS, { recursive: true });
  server = createServer(async (req, res) => {
    requests.push(req.url);
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

function native(args) {
  return execFileSync(COCONUT, args, { cwd: ROOT, encoding: "utf8", env: { ...process.env, RAYON_NUM_THREADS: "1" } });
}

async function launch(flags) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...BASE_FLAGS, ...flags] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  // Every value the progress bar shows while the model downloads.
  await page.addInitScript(() => {
    window.__progress = [];
    new MutationObserver(() => {
      const bar = document.querySelector('[data-testid="load-progress"]');
      if (bar) window.__progress.push([Number(bar.getAttribute("value")), Number(bar.getAttribute("max"))]);
    }).observe(document, { subtree: true, attributes: true, childList: true });
  });
  return { browser, page, errors };
}

async function openApp(flags, url = base) {
  const s = await launch(flags);
  await s.page.goto(url);
  await s.page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 240_000 });
  const err = await s.page.$('[data-testid="error"]');
  assert.equal(err, null, `page error: ${err && (await err.textContent())}\n${s.errors.join("\n")}`);
  return s;
}

async function ask(page, question, k) {
  await page.fill('[data-testid="question-input"]', question);
  await page.fill('[data-testid="k-input"]', String(k));
  await page.dispatchEvent('[data-testid="k-input"]', "change");
  const previous = await page.$$eval('[data-testid="answer"]', (els) => els.map((e) => e.dataset.id).join());
  await page.click('[data-testid="ask-button"]');
  await page.waitForFunction(
    (prev) => {
      const a = document.querySelector('[data-testid="answer"]');
      return (a && a.dataset.id !== prev) || document.querySelector('.watch [data-testid="error"]');
    },
    previous, { timeout: 240_000 },
  );
  const err = await page.$('.watch [data-testid="error"]');
  assert.equal(err, null, `ask failed: ${err && (await err.textContent())}`);
  return (await page.textContent('[data-testid="answer"]')).trim();
}

async function officialQuestion(i) {
  return JSON.parse(await readFile(VALID, "utf8"))[i];
}

function nativeAnswer(question, k) {
  const out = JSON.parse(native(["generate", "--checkpoint", MODEL, "--question", question, "--k", String(k), "--json"]));
  return (Array.isArray(out) ? out[0] : out).answer;
}

test("stack check (check.html): the HF GPT-2 import scores like HuggingFace on WebGPU and on the CPU fallback", { timeout: 300_000 }, async () => {
  const want = JSON.parse(await readFile(join(ROOT, "tests/fixtures/gpt2-tiny-expected.json"), "utf8")).score;
  for (const [flags, label] of [[WEBGPU_FLAGS, /WebGPU/], [[], /CPU/]]) {
    const { browser, page, errors } = await launch(flags);
    try {
      await page.goto(base + "check.html");
      await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 180_000 });
      assert.match(await page.textContent("#backend"), label, errors.join("\n"));
      assert.equal(await page.getAttribute("#smoke-status", "data-status"), "done", await page.textContent("#smoke-status"));
      const got = JSON.parse(await page.textContent("#smoke-result"));
      assert.deepEqual(got.tokens, want.tokens, "tokenisation in the page differs from HF's");
      const worst = Math.max(...got.logprobs.map((v, i) => Math.abs(v - want.logprobs[i])));
      assert.ok(worst <= 1e-4, `page log-probs differ from HF by ${worst}`);
    } finally {
      await browser.close();
    }
  }
});

test("WebGPU: load with progress, ask an official question, watch the thoughts, same answer and node values as native", { timeout: 600_000 }, async () => {
  const { browser, page, errors } = await openApp(WEBGPU_FLAGS);
  try {
    assert.match(await page.textContent('[data-testid="backend-badge"]'), /WebGPU/, errors.join("\n"));
    // Loading: the bar moved through the download and ended full; the files were verified and loaded.
    const web = JSON.parse(await readFile(join(MODEL, "web.json"), "utf8"));
    const seen = await page.evaluate(() => window.__progress);
    const values = new Set(seen.map(([v]) => v));
    assert.ok(values.size >= 2, `progress bar never moved: ${JSON.stringify(seen.slice(0, 10))}`);
    assert.deepEqual(seen.at(-1), [web.total_bytes, web.total_bytes], "progress ends at the model's total bytes");
    assert.match(await page.textContent(".load .status"), /loaded/);

    const item = await officialQuestion(3);
    const t0 = Date.now();
    const answer = await ask(page, item.question, K);
    const firstAnswerMs = Date.now() - t0;
    // The frames stream in after the answer, one per thought.
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="thought-frame"]').length === n, K + 1, { timeout: 240_000 });
    const allFramesMs = Date.now() - t0;
    const frames = await page.$$eval('[data-testid="thought-frame"]', (els) => els.map((e) => ({ t: Number(e.dataset.t), d: JSON.parse(e.dataset.distribution) })));
    assert.ok(frames.length >= K, `${frames.length} thought frames for k = ${K}`);
    for (const f of frames) {
      const sum = f.d.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-3 && f.d.every((v) => v >= 0), `frame ${f.t}: node values sum to ${sum}`);
    }
    // The graph is drawn as a layered DAG: every edge points down (parent above child).
    const downward = await page.$$eval("svg.graph line.edge", (ls) => ls.every((l) => Number(l.getAttribute("y1")) < Number(l.getAttribute("y2"))));
    assert.ok(downward, "an edge of the concept graph points up");
    assert.equal(await page.$$eval("svg.graph g.node.option", (g) => g.length), 2, "the two candidate answers are marked");
    // The animation runs: the current frame advances to the last one.
    await page.waitForSelector(`[data-testid="thought-frame"][data-t="${K}"][aria-pressed="true"]`, { timeout: 30_000 });
    assert.equal(answer, nativeAnswer(item.question, K), "the page's answer differs from `coconut generate`");
    // WebGPU inference equals native within 1e-3: every node value of every thought.
    const want = JSON.parse(native(["analyze", "--checkpoint", MODEL, "--question", item.question, "--k", String(K)]));
    let worst = 0;
    frames.forEach((f, i) => f.d.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - want.steps[i].distribution[j])))));
    assert.ok(worst <= 1e-3, `node values differ from native by ${worst}`);
    const timing = await page.textContent(".timing");
    console.log(`# WebGPU (SwiftShader): time to first answer ${firstAnswerMs} ms, all ${K + 1} frames ${allFramesMs} ms; ${timing}; max |page - native| node value ${worst.toExponential(2)}`);
    await page.screenshot({ path: join(ARTIFACTS, "webgpu-answer.png"), fullPage: true });

    // The search, thought by thought: clicking a frame shows it; the ringed frontier (after t thoughts, the
    // concepts t hops from the person) holds most of the first thought's value, not the two options.
    const mass = [];
    const sum = (sel) => page.$$eval(sel, (gs) => gs.reduce((a, g) => a + Number(g.dataset.value || 0), 0));
    for (let t = 1; t <= K; t++) {
      await page.click(`[data-testid="thought-frame"][data-t="${t}"]`);
      await page.waitForSelector(`[data-testid="thought-frame"][data-t="${t}"][aria-pressed="true"]`);
      mass.push({ t, frontier: await sum("svg.graph g.node.frontier:not(.option)"), options: await sum("svg.graph g.node.option") });
      if (t === 1) await page.screenshot({ path: join(ARTIFACTS, "thought-1.png"), fullPage: true });
    }
    console.log(`# frontier / options value by thought: ${mass.map((m) => `${m.t}: ${m.frontier.toFixed(2)} / ${m.options.toFixed(2)}`).join(", ")}`);
    assert.ok(mass[0].frontier > 0.5 && mass[0].frontier > mass[0].options, `thought 1 puts ${mass[0].frontier} of its value on the frontier, ${mass[0].options} on the options`);

    // An unknown word is flagged as the user types, and the question cannot be asked.
    await page.fill('[data-testid="question-input"]', item.question.replace(/^Every (\w+)/, "Every wumpuzzle"));
    await page.waitForSelector('[data-testid="unknown-words"]');
    assert.match(await page.textContent('[data-testid="unknown-words"]'), /wumpuzzle/);
    assert.ok(await page.isDisabled('[data-testid="ask-button"]'));
    assert.ok(await page.$(".unknown-word"), "the unknown word is underlined");
    await page.screenshot({ path: join(ARTIFACTS, "unknown-word.png"), fullPage: true });
    // A sentence that is not a ProsQA fact is named.
    await page.fill('[data-testid="question-input"]', "Tom is a wumpus. Tom likes cats. Is Tom a wumpus or yumpus?");
    assert.match(await page.textContent('[data-testid="parse-error"]'), /sentence 2/);
    // No request left this machine's server.
    assert.ok(requests.every((u) => u.startsWith("/")), "only local requests");
  } finally {
    await browser.close();
  }
});

async function startFineTune(page, { lastStage, steps, batch, lr, heldout = 32, scratch }) {
  const settings = page.locator(".finetune .settings input");
  const values = [lastStage, steps, batch, lr, undefined, heldout];
  for (const [i, v] of values.entries()) {
    if (v === undefined) continue;
    await settings.nth(i).fill(String(v));
    await settings.nth(i).dispatchEvent("change");
  }
  if (scratch) await settings.nth(6).check();
  await page.click('[data-testid="finetune-start"]');
}

const lossPoints = (page) => page.evaluate(() => Number(document.querySelector('[data-testid="finetune-loss"]').dataset.points));

async function waitForPoints(page, n, timeout) {
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="finetune-loss"]').dataset.points) >= n
    || document.querySelector('.finetune [data-testid="error"]'), n, { timeout });
  const err = await page.$('.finetune [data-testid="error"]');
  assert.equal(err, null, `fine-tune failed: ${err && (await err.textContent())}`);
}

test("WebGPU: the fine-tune runs Burn's autodiff on WebGPU (a few steps on SwiftShader)", { timeout: 600_000 }, async () => {
  const { browser, page, errors } = await openApp(WEBGPU_FLAGS);
  try {
    assert.match(await page.textContent('[data-testid="backend-badge"]'), /WebGPU/, errors.join("\n"));
    await startFineTune(page, { lastStage: 1, steps: 2, batch: 2, lr: 0.001, heldout: 0, scratch: false });
    await waitForPoints(page, 3, 540_000); // stage 0 and the first stage-1 step (one continuous thought)
    const losses = (await page.getAttribute('[data-testid="finetune-loss"]', "data-losses")).split(",").map(Number);
    assert.ok(losses.every(Number.isFinite), `losses: ${losses}`);
    console.log(`# fine-tune (WebGPU on SwiftShader): ${await page.textContent('[data-testid="finetune-status"]')}`);
  } finally {
    await browser.close();
  }
});

test("CPU fallback: fine-tune in the tab: loss chart updates and falls, pause/resume, use and download the model", { timeout: 600_000 }, async () => {
  const { browser, page } = await openApp([]);
  try {
    await startFineTune(page, { lastStage: 0, steps: 30, batch: 4, lr: 0.003, scratch: true }); // from scratch: a clear fall
    await waitForPoints(page, 2, 240_000);
    // The UI thread stays responsive while the worker trains.
    const t0 = Date.now();
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
    assert.ok(Date.now() - t0 < 1000, "the page froze during fine-tuning");
    await page.click("text=Pause");
    await page.waitForSelector('[data-testid="finetune-status"] >> text=paused');
    const held = await lossPoints(page);
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok((await lossPoints(page)) <= held + 1, "paused training kept stepping");
    await page.click("text=Resume");
    await waitForPoints(page, 25, 540_000);
    const losses = (await page.getAttribute('[data-testid="finetune-loss"]', "data-losses")).split(",").map(Number);
    const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(mean(losses.slice(-5)) < mean(losses.slice(0, 5)) * 0.8, `loss did not fall: ${losses.join(", ")}`);
    await page.waitForSelector('[data-testid="finetune-status"] >> text=finished', { timeout: 120_000 });
    console.log(`# fine-tune (CPU wasm): ${await page.textContent('[data-testid="finetune-status"]')}`);
    await page.screenshot({ path: join(ARTIFACTS, "finetune.png"), fullPage: true });
    await page.click("text=Use this model");
    await page.waitForSelector('[data-testid="finetune-status"] >> text=now answer questions');
    await page.click("text=Download checkpoint");
    await page.waitForSelector(".downloads a >> text=model.bpk");
    assert.deepEqual(await page.$$eval(".downloads a", (as) => as.map((a) => a.getAttribute("download")).sort()),
      ["config.json", "manifest.json", "model.bpk", "tokenizer.json"]);
    // The downloaded checkpoint loads back through "Load your own checkpoint" (verified by its manifest).
    const saved = [];
    for (const name of ["config.json", "manifest.json", "model.bpk", "tokenizer.json"]) {
      const [download] = await Promise.all([page.waitForEvent("download"), page.click(`.downloads a[download="${name}"]`)]);
      const path = join(ARTIFACTS, "finetuned", name);
      await download.saveAs(path);
      saved.push(path);
    }
    await page.setInputFiles('.load input[type="file"]', saved);
    await page.waitForSelector(".load .status >> text=your checkpoint", { timeout: 60_000 });
    // A corrupt upload is refused by name, and the loaded model stays.
    const bad = await readFile(join(ARTIFACTS, "finetuned", "model.bpk"));
    bad[100] ^= 0xff;
    const files = [];
    for (const p of saved.filter((p) => !p.endsWith("model.bpk"))) {
      files.push({ name: p.split("/").at(-1), mimeType: "application/json", buffer: await readFile(p) });
    }
    files.push({ name: "model.bpk", mimeType: "application/octet-stream", buffer: bad });
    await page.setInputFiles('.load input[type="file"]', files);
    await page.waitForSelector('.load [data-testid="error"]');
    assert.match(await page.textContent('.load [data-testid="error"]'), /model\.bpk.*SHA-256/);
  } finally {
    await browser.close();
  }
});

test("no WebGPU adapter: the CPU fallback says so and gives the same answer as native; the CoT baseline model too", { timeout: 600_000 }, async () => {
  const { browser, page, errors } = await openApp([]);
  try {
    assert.match(await page.textContent('[data-testid="backend-badge"]'), /CPU/);
    assert.match(await page.textContent("#fallback-reason"), /CPU fallback: .+/);
    // The example box names the example the question box holds (the first, on load) ...
    const examples = await page.evaluate(() => fetch("static/examples.json").then((r) => r.json()));
    assert.equal(await page.inputValue('[data-testid="example-select"]'), "0");
    assert.equal(await page.inputValue('[data-testid="question-input"]'), examples[0].question);
    // An example's answer is known: the page says whether the model's answer is right.
    await page.fill('[data-testid="k-input"]', String(K));
    await page.dispatchEvent('[data-testid="k-input"]', "change");
    await page.click('[data-testid="ask-button"]');
    await page.waitForSelector('[data-testid="verdict"]', { timeout: 240_000 });
    const exampleAnswer = (await page.textContent('[data-testid="answer"]')).trim();
    assert.equal(await page.textContent('[data-testid="verdict"]'),
      exampleAnswer === examples[0].answer ? "✓ right" : `✗ wrong: the answer is “${examples[0].answer}”`);
    assert.equal(exampleAnswer, nativeAnswer(examples[0].question, K));
    // Side by side: the same question also answered by the CoT baseline, as the native program does.
    await page.check('[data-testid="compare-toggle"]');
    await page.click('[data-testid="ask-button"]');
    await page.waitForSelector('[data-testid="compare-answer"]', { timeout: 240_000 });
    const cotSide = JSON.parse(native(["generate", "--checkpoint", COT_MODEL, "--question", examples[0].question, "--json"]));
    assert.equal((await page.textContent('[data-testid="compare-answer"]')).trim(), (Array.isArray(cotSide) ? cotSide[0] : cotSide).answer);
    await page.screenshot({ path: join(ARTIFACTS, "side-by-side.png"), fullPage: true });
    await page.uncheck('[data-testid="compare-toggle"]');
    const item = await officialQuestion(3);
    const t0 = Date.now();
    const answer = await ask(page, item.question, K);
    // ... and, for a question typed in, that example or none.
    const shown = examples.findIndex((e) => e.question === item.question);
    assert.equal(await page.inputValue('[data-testid="example-select"]'), shown < 0 ? "" : String(shown));
    if (shown < 0) assert.equal(await page.$('[data-testid="verdict"]'), null, "a verdict for a question whose answer the page does not know");
    const firstAnswerMs = Date.now() - t0;
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="thought-frame"]').length === n, K + 1, { timeout: 120_000 });
    console.log(`# CPU (wasm): time to first answer ${firstAnswerMs} ms, all ${K + 1} frames ${Date.now() - t0} ms; ${await page.textContent(".timing")}`);
    assert.equal(answer, nativeAnswer(item.question, K));
    await page.screenshot({ path: join(ARTIFACTS, "cpu-answer.png"), fullPage: true });
    // CoT mode: no thoughts (the k box is disabled), one frame, the model continues in language.
    await page.selectOption('select[aria-label="Reasoning mode"]', "cot");
    assert.ok(await page.isDisabled('[data-testid="k-input"]'));
    await page.click('[data-testid="ask-button"]');
    await page.waitForFunction(() => document.querySelector(".timing")?.textContent.includes("k = 0"), null, { timeout: 120_000 });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="thought-frame"]').length === 1, null, { timeout: 120_000 });
    await page.selectOption('select[aria-label="Reasoning mode"]', "coconut");
    // An over-long question is refused with the model's limit, and the worker keeps answering.
    const facts = item.question.slice(0, item.question.lastIndexOf("Is "));
    await page.fill('[data-testid="question-input"]', facts.repeat(6) + item.question.slice(item.question.lastIndexOf("Is ")));
    await page.click('[data-testid="ask-button"]');
    await page.waitForSelector('.watch [data-testid="error"]', { timeout: 60_000 });
    assert.match(await page.textContent('.watch [data-testid="error"]'), /too long for this model: \d+ tokens .* at most \d+/);
    assert.equal(await ask(page, item.question, K), answer);
    // Readable at phone width: nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone screen`);
    await page.screenshot({ path: join(ARTIFACTS, "phone.png"), fullPage: true });
    // Keyboard: Ctrl+Enter in the question box asks (here with k = 2: three frames).
    await page.fill('[data-testid="k-input"]', "2");
    await page.dispatchEvent('[data-testid="k-input"]', "change");
    await page.focus('[data-testid="question-input"]');
    await page.keyboard.press("Control+Enter");
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="thought-frame"]').length === 3, null, { timeout: 120_000 });
    // The comparison model: the shipped CoT baseline loads, answers in language (k disabled), as native.
    await page.setViewportSize({ width: 1280, height: 1000 });
    await page.selectOption('[data-testid="model-select"]', "1");
    await page.waitForFunction(() => document.querySelector(".load .status")?.textContent.includes("trained as cot"), null, { timeout: 120_000 });
    assert.ok(await page.isDisabled('[data-testid="k-input"]'));
    assert.equal(await page.inputValue('select[aria-label="Reasoning mode"]'), "cot");
    const previous = await page.getAttribute('[data-testid="answer"]', "data-id");
    await page.fill('[data-testid="question-input"]', item.question);
    await page.click('[data-testid="ask-button"]');
    await page.waitForFunction((prev) => document.querySelector('[data-testid="answer"]')?.dataset.id !== prev, previous, { timeout: 120_000 });
    const cot = JSON.parse(native(["generate", "--checkpoint", COT_MODEL, "--method", "cot", "--question", item.question, "--k", "0", "--json"]));
    assert.equal((await page.textContent('[data-testid="answer"]')).trim(), (Array.isArray(cot) ? cot[0] : cot).answer);
    await page.screenshot({ path: join(ARTIFACTS, "cot-model.png"), fullPage: true });
    // Nothing the page asked for was missing (a 404 shows as a console error).
    assert.deepEqual(errors.filter((e) => /404|Failed to load resource/.test(e)), []);
  } finally {
    await browser.close();
  }
});

test("a corrupt model download is refused with a clear message and a retry button", { timeout: 300_000 }, async () => {
  const { browser, page } = await launch([]);
  try {
    // Serve a damaged model.bpk (one byte flipped) for this page only.
    await page.route("**/static/models/prosqa-coconut/model.bpk*", async (route) => {
      const body = await readFile(join(MODEL, "model.bpk"));
      body[body.length >> 1] ^= 0xff;
      await route.fulfill({ status: 200, body, contentType: "application/octet-stream" });
    });
    await page.goto(base);
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 240_000 });
    assert.match(await page.textContent('[data-testid="error"]'), /model\.bpk: SHA-256 differs .*discarded/);
    assert.ok(await page.$("text=Retry download"));
    await page.unroute("**/static/models/prosqa-coconut/model.bpk*");
    await page.click("text=Retry download");
    await page.waitForSelector(".load .status >> text=loaded", { timeout: 120_000 });
    // The verified files were cached (Cache API, keyed by the model version): a reload takes them from there.
    const before = requests.filter((u) => u.includes("model.bpk")).length;
    await page.reload();
    await page.waitForSelector(".load .status >> text=from the browser cache", { timeout: 120_000 });
    assert.equal(requests.filter((u) => u.includes("model.bpk")).length, before, "model.bpk was downloaded again");
  } finally {
    await browser.close();
  }
});

test("a lost WebGPU device: the worker restarts on the CPU, says why, and the question is answered", { timeout: 600_000 }, async () => {
  // `?simulate=gpu-loss` makes the WebGPU worker abort on its first question, as a lost device does.
  const { browser, page } = await openApp(WEBGPU_FLAGS, base + "?simulate=gpu-loss");
  try {
    assert.match(await page.textContent('[data-testid="backend-badge"]'), /WebGPU/);
    const item = await officialQuestion(5);
    await page.fill('[data-testid="question-input"]', item.question);
    await page.click('[data-testid="ask-button"]');
    await page.waitForSelector('[data-testid="backend-badge"] >> text=CPU', { timeout: 120_000 });
    assert.match(await page.textContent('[data-testid="error"]'), /WebGPU worker stopped.*continuing on the CPU/);
    await page.waitForSelector(".load .status >> text=loaded", { timeout: 120_000 });
    const answer = await ask(page, item.question, K);
    assert.equal(answer, nativeAnswer(item.question, K));
  } finally {
    await browser.close();
  }
});

test("a rotary-position checkpoint (the flagship's kind) loaded from files answers on WebGPU as natively", { timeout: 600_000 }, async () => {
  const dir = join(ARTIFACTS, "flagship-web");
  await rm(dir, { recursive: true, force: true });
  native(["export-web", "--checkpoint", FLAGSHIP, "--out", dir]);
  assert.equal(JSON.parse(await readFile(join(dir, "config.json"), "utf8")).position, "Rope");
  const { browser, page, errors } = await openApp(WEBGPU_FLAGS);
  try {
    await page.setInputFiles('.load input[type="file"]', ["config.json", "manifest.json", "model.bpk", "tokenizer.json"].map((n) => join(dir, n)));
    await page.waitForSelector(".load .status >> text=your checkpoint", { timeout: 120_000 });
    const item = await officialQuestion(3);
    const answer = await ask(page, item.question, 3);
    const out = JSON.parse(native(["generate", "--checkpoint", FLAGSHIP, "--question", item.question, "--k", "3", "--json"]));
    assert.equal(answer, out.answer, "the page's answer differs from `coconut generate` on the rotary checkpoint");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
