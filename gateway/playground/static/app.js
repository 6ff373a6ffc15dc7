// The playground: each tab calls one public mmserve route, with the API key typed at the top.
import {
  PcmPlayer, base64ToBytes, bytesToBase64, concatBytes, floatToPcm16, openMic, wavFromPcm16,
} from "./audio.js";

const $ = (id) => document.getElementById(id);
const apiBase = location.pathname.replace(/\/playground\/?$/, "");  // the API sits beside the page
const apiKey = () => $("api-key").value.trim();

// ------------------------------------------------------------------ shared
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  if (apiKey()) headers.set("Authorization", `Bearer ${apiKey()}`);
  const resp = await fetch(apiBase + path, { ...init, headers });
  if (!resp.ok) throw new Error(await errorText(resp));
  return resp;
}

function postJson(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

async function errorText(resp) {
  try {
    const { message, param } = (await resp.json()).error;
    return `${resp.status}: ${message}${param ? ` (${param})` : ""}`;
  } catch {
    return `${resp.status} ${resp.statusText}`;
  }
}

function setStatus(tab, text, isError = false) {
  $(`${tab}-status`).textContent = text;
  $(`${tab}-status`).classList.toggle("error", isError);
}

// Runs a button's work, showing progress and any error beside it.
async function busy(tab, button, work) {
  button.disabled = true;
  setStatus(tab, "working...");
  const start = performance.now();
  try {
    const note = await work();
    setStatus(tab, note ?? `done in ${((performance.now() - start) / 1000).toFixed(1)} s`);
  } catch (err) {
    setStatus(tab, err.message, true);
  } finally {
    button.disabled = false;
  }
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function showPreview(input, img) {
  input.addEventListener("change", () => { img.src = input.files[0] ? URL.createObjectURL(input.files[0]) : ""; });
}

let playbackContext = null;
function playback() {  // one AudioContext for played-back speech, made on a click (autoplay rules)
  playbackContext ??= new AudioContext();
  return playbackContext;
}

// ------------------------------------------------------------------ tabs and model pickers
for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    document.querySelectorAll("#tabs button, .tab").forEach((el) => el.classList.remove("active"));
    button.classList.add("active");
    $(`tab-${button.dataset.tab}`).classList.add("active");
  });
}

async function loadModels() {
  try {
    const models = (await (await api("/v1/models")).json()).data;
    for (const select of document.querySelectorAll("select[data-task]")) {
      const tasks = select.dataset.task.split(" ");
      const kept = select.value;
      select.replaceChildren(new Option("(default)", ""),
        ...models.filter((m) => tasks.includes(m.task)).map((m) => new Option(m.id, m.id)));
      select.value = [...select.options].some((o) => o.value === kept) ? kept : "";
    }
    setStatus("models", `${models.length} model${models.length === 1 ? "" : "s"} served`);
  } catch (err) {
    setStatus("models", `models: ${err.message}`, true);
  }
}
$("key-form").addEventListener("submit", (event) => { event.preventDefault(); loadModels(); });

// ------------------------------------------------------------------ speak -> picture
let recording = null;

$("speak-record").addEventListener("click", async () => {
  try {
    const ctx = new AudioContext();
    const chunks = [];
    let frames = 0;
    $("speak-seconds").textContent = "0.0 s";
    const mic = await openMic(ctx, (samples) => {
      chunks.push(samples);
      frames += samples.length;
      $("speak-seconds").textContent = `${(frames / ctx.sampleRate).toFixed(1)} s`;
    });
    recording = { ctx, mic, chunks };
    $("speak-record").disabled = true;
    $("speak-stop").disabled = false;
    setStatus("speak", "recording...");
  } catch (err) {
    setStatus("speak", `microphone: ${err.message}`, true);
  }
});

$("speak-stop").addEventListener("click", () => {
  const { ctx, mic, chunks } = recording;
  recording = null;
  $("speak-stop").disabled = true;
  busy("speak", $("speak-record"), () => drawSpeech(ctx, mic, chunks));
});

async function drawSpeech(ctx, mic, chunks) {
  mic.stop();
  await ctx.close();
  if (!chunks.length) throw new Error("no sound came from the microphone");
  const pcm = concatBytes(chunks.map(floatToPcm16));
  const form = new FormData();
  form.append("file", wavFromPcm16(pcm, ctx.sampleRate), "speech.wav");
  if ($("speak-asr").value) form.append("asr_model", $("speak-asr").value);
  form.append("rewrite", $("speak-rewrite").checked);
  if ($("speak-seed").value) form.append("seed", $("speak-seed").value);
  setStatus("speak", "drawing...");
  const answer = await (await api("/v1/flows/speech-to-image", { method: "POST", body: form })).json();
  $("speak-transcript").textContent = answer.transcript;
  $("speak-prompt").textContent = answer.prompt;
  $("speak-timings").textContent = Object.entries(answer.timings).map(([k, v]) => `${k} ${v}`).join(", ");
  const image = answer.images[0];
  $("speak-image").src = `data:${image.mime_type};base64,${image.b64_json}`;
}

// ------------------------------------------------------------------ talk (realtime)
let talk = null;

function logLine(role, text) {
  const last = $("talk-log").lastElementChild;
  if (role === "error" && last?.className === "error" && last.dataset.text === text) {  // a repeat: count it
    last.dataset.count = Number(last.dataset.count) + 1;
    last.textContent = `${text} (x${last.dataset.count})`;
    return last;
  }
  const line = document.createElement("p");
  line.className = role;
  line.textContent = text;
  Object.assign(line.dataset, { text, count: 1 });
  $("talk-log").append(line);
  line.scrollIntoView({ block: "nearest" });
  return line;
}

function realtimeUrl(picks, extra = {}) {  // picks: [select id, query parameter]
  const params = new URLSearchParams(extra);
  for (const [id, name] of picks) {
    if ($(id).value) params.set(name, $(id).value);
  }
  const url = new URL(`${apiBase}/v1/realtime?${params}`, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

// Browsers cannot set headers on a WebSocket: the key travels as a subprotocol, as with OpenAI.
const realtimeProtocols = () => ["realtime", ...(apiKey() ? [`openai-insecure-api-key.${apiKey()}`] : [])];

// The microphone into an open session, as 24 kHz PCM16 appends; resolves to the mic (stop() ends it).
async function streamMic(ctx, ws) {
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("could not connect to /v1/realtime"));
  });
  return openMic(ctx, (samples) => {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: bytesToBase64(floatToPcm16(samples)) }));
    }
  });
}

function startTalk() {
  const protocols = realtimeProtocols();
  const ctx = new AudioContext({ sampleRate: 24000 });  // the mic is resampled to the session's 24 kHz
  const speaker = ctx.createMediaStreamDestination();
  $("talk-audio").srcObject = speaker.stream;
  const player = new PcmPlayer(ctx, speaker);
  player.onchange = () => {
    $("talk-bytes").textContent = player.bytes;
    $("talk-played").textContent = player.playedS.toFixed(1);
  };
  player.onchange();
  $("talk-start").disabled = true;
  $("talk-log").replaceChildren();  // a new conversation
  setStatus("talk", "connecting...");
  const ws = new WebSocket(realtimeUrl([["talk-llm", "model"], ["talk-asr", "asr_model"], ["talk-tts", "tts_model"]]),
                          protocols);
  const session = talk = { ctx, ws, player, mic: null, reply: null };
  ws.onmessage = (event) => onRealtimeEvent(session, JSON.parse(event.data));
  ws.onclose = (event) => {
    if (talk !== session) return;  // hung up here
    setStatus("talk", `closed by the server: ${event.code} ${event.reason}`, event.code !== 1000);
    stopTalk(session);
  };
  return session;
}

async function connect(session) {
  const mic = await streamMic(session.ctx, session.ws);
  if (talk !== session) return mic.stop();  // closed by the server meanwhile (e.g. a wrong key)
  session.mic = mic;
  await $("talk-audio").play();
  $("talk-stop").disabled = false;
  setStatus("talk", "listening: speak now");
}

function closeRealtime(session) {  // its microphone, socket and audio context
  session.mic?.stop();
  if (session.ws.readyState <= WebSocket.OPEN) session.ws.close(1000);
  session.ctx.close();
}

function stopTalk(session = talk) {
  if (session && talk === session) {
    talk = null;
    closeRealtime(session);
  }
  $("talk-start").disabled = false;
  $("talk-stop").disabled = true;
  $("talk-vad").textContent = "-";
}

function onRealtimeEvent(session, event) {
  switch (event.type) {
    case "session.created":
      logLine("system", `session ${event.session?.id ?? ""} (${event.session?.model ?? "default model"})`);
      break;
    case "input_audio_buffer.speech_started":
      session.player.stop();  // barge-in: the user speaks, queued reply audio goes
      $("talk-vad").textContent = "speaking";
      logLine("system", `speech started at ${event.audio_start_ms} ms`);
      break;
    case "input_audio_buffer.speech_stopped":
      $("talk-vad").textContent = "silence";
      logLine("system", `speech stopped at ${event.audio_end_ms} ms`);
      break;
    case "conversation.item.input_audio_transcription.completed":
      logLine("user", event.transcript);
      break;
    case "response.created":
      session.reply = logLine("assistant", "");
      break;
    case "response.output_audio_transcript.delta":
    case "response.output_text.delta":
      (session.reply ??= logLine("assistant", "")).textContent += event.delta;
      break;
    case "response.output_audio.delta":
      session.player.push(base64ToBytes(event.delta), 24000);
      break;
    case "response.done":
      if (event.response?.status !== "completed" && session.reply) {
        session.reply.textContent += ` [${event.response?.status}]`;  // e.g. cancelled by barge-in
      }
      session.reply = null;
      break;
    case "error":
      logLine("error", `${event.error?.code ?? "error"}: ${event.error?.message}`);
      break;
  }
}

$("talk-start").addEventListener("click", async () => {
  const session = startTalk();
  try {
    await connect(session);
  } catch (err) {
    if (talk !== session) return;  // the server closed it meanwhile, and the status says why
    setStatus("talk", err.message, true);
    stopTalk(session);
  }
});
$("talk-stop").addEventListener("click", () => { stopTalk(); setStatus("talk", "hung up"); });

// ------------------------------------------------------------------ live captions
let captions = null;

function captionLine(session, itemId) {  // one line per turn, found by its item id
  let line = session.lines.get(itemId);
  if (!line) {
    line = document.createElement("p");
    line.className = "partial";
    $("captions-log").append(line);
    session.lines.set(itemId, line);
  }
  line.scrollIntoView({ block: "nearest" });
  return line;
}

function onCaptionEvent(session, event) {
  switch (event.type) {
    case "conversation.item.input_audio_transcription.delta":
      captionLine(session, event.item_id).textContent += event.delta;
      break;
    case "conversation.item.input_audio_transcription.completed": {
      const line = captionLine(session, event.item_id);
      line.className = "user";
      line.textContent = event.transcript;
      break;
    }
    case "error": {
      const line = document.createElement("p");
      line.className = "error";
      line.textContent = `${event.error?.code ?? "error"}: ${event.error?.message}`;
      $("captions-log").append(line);
      break;
    }
  }
}

function stopCaptions(session = captions) {
  if (session && captions === session) {
    captions = null;
    closeRealtime(session);
  }
  $("captions-start").disabled = false;
  $("captions-stop").disabled = true;
}

$("captions-start").addEventListener("click", async () => {
  const ctx = new AudioContext({ sampleRate: 24000 });
  const ws = new WebSocket(realtimeUrl([["captions-asr", "asr_model"]], { intent: "transcription" }),
                           realtimeProtocols());
  const session = captions = { ctx, ws, mic: null, lines: new Map() };
  ws.onmessage = (event) => onCaptionEvent(session, JSON.parse(event.data));
  ws.onclose = (event) => {
    if (captions !== session) return;
    setStatus("captions", `closed by the server: ${event.code} ${event.reason}`, event.code !== 1000);
    stopCaptions(session);
  };
  $("captions-start").disabled = true;
  $("captions-log").replaceChildren();
  setStatus("captions", "connecting...");
  try {
    const mic = await streamMic(ctx, ws);
    if (captions !== session) return mic.stop();
    session.mic = mic;
    $("captions-stop").disabled = false;
    setStatus("captions", "listening: speak now");
  } catch (err) {
    if (captions !== session) return;
    setStatus("captions", err.message, true);
    stopCaptions(session);
  }
});
$("captions-stop").addEventListener("click", () => { stopCaptions(); setStatus("captions", "stopped"); });

// ------------------------------------------------------------------ describe aloud
showPreview($("describe-image"), $("describe-preview"));

$("describe-go").addEventListener("click", () => busy("describe", $("describe-go"), async () => {
  const file = $("describe-image").files[0];
  if (!file) throw new Error("choose an image first");
  const form = new FormData();
  form.append("image", file);
  if ($("describe-question").value.trim()) form.append("question", $("describe-question").value.trim());
  if ($("describe-voice").value.trim()) form.append("voice", $("describe-voice").value.trim());
  const answer = await (await api("/v1/flows/describe-aloud", { method: "POST", body: form })).json();
  $("describe-text").textContent = answer.description;
  if (!answer.audio.b64_wav) return "nothing speakable in the answer";
  $("describe-audio").src = `data:audio/wav;base64,${answer.audio.b64_wav}`;
  await $("describe-audio").play();
  return `${answer.audio.duration_s.toFixed(1)} s of speech in ${(answer.timings.total_ms / 1000).toFixed(1)} s`;
}));

// ------------------------------------------------------------------ speech synthesis
$("tts-go").addEventListener("click", () => busy("tts", $("tts-go"), async () => {
  const player = new PcmPlayer(playback(), playback().destination);  // heard while it is synthesized
  player.onchange = () => { $("tts-bytes").textContent = player.bytes; };
  const start = performance.now();
  const body = { input: $("tts-input").value, response_format: "pcm", stream: true,
                 speed: Number($("tts-speed").value) };
  if ($("tts-model").value) body.model = $("tts-model").value;
  if ($("tts-voice").value.trim()) body.voice = $("tts-voice").value.trim();
  const resp = await postJson("/v1/audio/speech", body);
  const rate = Number(resp.headers.get("X-Sample-Rate"));
  const reader = resp.body.getReader();
  const parts = [];
  let firstMs = null;
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    firstMs ??= performance.now() - start;
    parts.push(read.value);
    player.push(read.value, rate);
  }
  const pcm = concatBytes(parts);
  $("tts-audio").src = URL.createObjectURL(wavFromPcm16(pcm.subarray(0, pcm.length & ~1), rate));  // to replay
  return `first audio after ${Math.round(firstMs)} ms, ${(pcm.length / 2 / rate).toFixed(1)} s of speech`;
}));

// ------------------------------------------------------------------ chat with an image
showPreview($("chat-image"), $("chat-preview"));

async function* sseData(resp) {  // the JSON payloads of a server-sent event stream, until [DONE]
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    pending += read.value;
    const events = pending.split("\n\n");
    pending = events.pop();
    for (const event of events) {
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

$("chat-go").addEventListener("click", () => busy("chat", $("chat-go"), async () => {
  const text = $("chat-input").value;
  const file = $("chat-image").files[0];
  const content = file ? [{ type: "text", text }, { type: "image_url", image_url: { url: await readAsDataUrl(file) } }]
    : text;
  const body = { messages: [{ role: "user", content }], stream: $("chat-stream").checked };
  if ($("chat-model").value) body.model = $("chat-model").value;
  const reply = $("chat-reply");
  reply.textContent = "";
  const resp = await postJson("/v1/chat/completions", body);
  if (!body.stream) {
    const answer = await resp.json();
    reply.textContent = answer.choices[0].message.content;
    return `answered by ${answer.model}`;
  }
  let model = "";
  for await (const chunk of sseData(resp)) {
    if (chunk.error) throw new Error(chunk.error.message);
    model = chunk.model;
    reply.textContent += chunk.choices[0]?.delta?.content ?? "";
  }
  return `answered by ${model} (streamed)`;
}));

loadModels();
