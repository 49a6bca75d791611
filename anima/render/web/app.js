// anima live client: WebSocket protocol v1 (anima/serve/protocol.py), audio playback on the
// AudioContext clock with the visuals mapped onto the same clock, microphone capture through an
// AudioWorklet, and local barge-in: the page silences the agent as soon as it hears the user.
"use strict";

const KIND = { USER_AUDIO: 1, AGENT_AUDIO: 2, MOTION: 3 };
const HEADER_BYTES = 12, RATE = 24000, JITTER_S = 0.12;
const $ = (id) => document.getElementById(id);
const VISITOR_KEY = "anima.visitor";  // this browser's visitor id: the server keeps each visitor's memory apart

const S = {
  ws: null, ctx: null, offset: null, motion: [], current: null, sources: [], playingTurn: null,
  cancelled: new Set(), serverCut: new Set(), agentUntil: 0, agentText: "", words: [], userCaption: "",
  userSpeaking: false, agentState: "idle", levels: { agent: 0, user: 0 }, character: "nemo",
  mic: { on: false, stream: null, node: null, pending: [], pendingLen: 0, seq: 0, frame: [], frameLen: 0,
         frameStart: 0, levels: [], run: 0, silent: 0, speaking: false, runStartCtx: 0 },
};
const metrics = { audioChunks: 0, lateChunks: 0, motionFrames: 0, droppedAfterInterrupt: 0, receivedAfterServerInterrupt: 0,
                  playedAfterInterrupt: 0, bargeIns: [], serverInterrupts: [], states: [], errors: [], turnsStarted: 0 };
window.anima = { metrics, state: S };

function log(kind, text) {
  const li = document.createElement("li"); li.className = kind; li.textContent = text;
  $("log").appendChild(li); $("log").scrollTop = 1e9;
}

function setStatus(text) { $("status").textContent = text; }

async function connect() {
  if (S.ws) S.ws.close();
  if (!S.ctx) S.ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
  await S.ctx.resume();
  S.character = $("character").value;
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  // With a token, the page's cookie (set when it was opened with ?token=...) authorises the WebSocket.
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const visitor = localStorage.getItem(VISITOR_KEY);
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  S.ws = ws; S.offset = null; S.motion = []; S.cancelled.clear();
  setStatus("connecting...");
  ws.onopen = () => ws.send(JSON.stringify({ type: "hello", version: 1, character: S.character,
    story_time: parseInt($("story-time").value, 10) || null, token, ...(visitor ? { visitor } : {}) }));
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onJson(JSON.parse(ev.data)) : onBinary(ev.data));
  ws.onclose = (ev) => { setStatus(`disconnected${ev.reason ? ": " + ev.reason : ""}`); for (const id of ["text", "send", "mic", "forget", "end"]) $(id).disabled = true; };
}

function updateOffset(pts) {
  // Media time -> AudioContext time. Rises at once when a message is late, decays slowly otherwise.
  const candidate = S.ctx.currentTime - pts + JITTER_S;
  S.offset = S.offset === null ? candidate : Math.max(S.offset - 0.0002, candidate);
}

function onBinary(buf) {
  const dv = new DataView(buf);
  const kind = dv.getUint8(0), id = dv.getUint32(4, true), pts = dv.getFloat32(8, true);
  if (kind === KIND.AGENT_AUDIO) playAudio(id, pts, new Int16Array(buf, HEADER_BYTES));
  else if (kind === KIND.MOTION) {
    metrics.motionFrames++;
    updateOffset(pts);
    S.motion.push({ t: pts + S.offset, pts, face: new Float32Array(buf, HEADER_BYTES, 112), joints: new Float32Array(buf, HEADER_BYTES + 448, 66) });
  }
}

function playAudio(turn, pts, pcm) {
  metrics.audioChunks++;
  if (turn !== 0 && S.cancelled.has(turn)) {
    metrics.droppedAfterInterrupt++;
    if (S.serverCut.has(turn)) metrics.receivedAfterServerInterrupt++;
    return;
  }
  updateOffset(pts);
  const samples = new Float32Array(pcm.length);
  let energy = 0;
  for (let i = 0; i < pcm.length; i++) { samples[i] = pcm[i] / 32768; energy += samples[i] * samples[i]; }
  S.levels.agent = Math.min(1, Math.max(0, (10 * Math.log10(energy / Math.max(1, pcm.length) + 1e-12) + 50) / 40));
  const buffer = S.ctx.createBuffer(1, samples.length, RATE);
  buffer.copyToChannel(samples, 0);
  const src = S.ctx.createBufferSource();
  src.buffer = buffer; src.connect(S.ctx.destination);
  let at = pts + S.offset;
  if (at < S.ctx.currentTime) { metrics.lateChunks++; at = S.ctx.currentTime + 0.005; }
  src.start(at);
  const item = { src, start: at, end: at + buffer.duration, turn };
  S.sources.push(item);
  src.onended = () => { S.sources = S.sources.filter((x) => x !== item); };
  if (turn !== 0) { S.playingTurn = turn; S.agentUntil = Math.max(S.agentUntil, item.end); }
}

function stopAgentAudio(source, onsetPerfMs) {
  const now = S.ctx.currentTime;
  const live = S.sources.filter((x) => x.end > now && x.turn !== 0);
  for (const x of live) { try { x.src.stop(); } catch (e) { /* already stopped */ } }
  S.sources = S.sources.filter((x) => !live.includes(x));
  if (S.playingTurn !== null) S.cancelled.add(S.playingTurn);
  const wasPlaying = S.agentUntil > now;
  S.agentUntil = now;
  if (wasPlaying && onsetPerfMs !== null) {
    const stoppedMs = performance.now() + (S.ctx.baseLatency || 0) * 1000;
    metrics.bargeIns.push({ source, turn: S.playingTurn, onsetMs: onsetPerfMs, stoppedMs, latencyMs: stoppedMs - onsetPerfMs });
  }
  return wasPlaying;
}

function onJson(msg) {
  switch (msg.type) {
    case "welcome":
      setStatus(`connected: session ${msg.session}, ${msg.character}${msg.story_time ? ", chapter " + msg.story_time : ""}`);
      for (const id of ["text", "send", "mic", "forget", "end"]) $(id).disabled = false;
      if (msg.visitor) localStorage.setItem(VISITOR_KEY, msg.visitor);  // remembered next time, on this browser only
      $("asr-note").hidden = !!msg.speech_recognition;
      break;
    case "state": S.agentState = msg.state; metrics.states.push(msg.state); break;
    case "agent_started":
      metrics.turnsStarted++; S.agentText = msg.text; S.words = [];
      break;
    case "agent_stopped":
      if (msg.interrupted) { S.cancelled.add(msg.turn); S.serverCut.add(msg.turn); }
      log("agent", (msg.heard || "") + (msg.interrupted ? " [interrupted]" : ""));
      break;
    case "interrupt":
      metrics.serverInterrupts.push({ atMs: performance.now(), onsetPts: msg.onset_pts });
      if (S.playingTurn !== null) S.serverCut.add(S.playingTurn);
      stopAgentAudio("server", null);
      break;
    case "words": for (const [t, w] of msg.words) S.words.push({ t, w }); break;
    case "user_speaking": S.userSpeaking = msg.value; if (msg.value) S.userCaption = ""; break;
    case "transcript": S.userCaption = msg.final ? msg.text : msg.text + " …"; if (msg.final) log("user", msg.text); break;  // partials live, marked
    case "forgotten":
      localStorage.removeItem(VISITOR_KEY);
      log("system", "The character has forgotten everything you said in any session. The next connection starts as a new visitor.");
      break;
    case "rated":  // the rating is in; the server split it over the character's replies
      metrics.rated = msg; $("rating").hidden = true;
      log("system", `Thank you: you rated this conversation ${msg.rating} of 5.`);
      S.ws.close();
      break;
    case "error": metrics.errors.push(msg.message); log("system", "error: " + msg.message); break;
    default: break;
  }
}

function sendText(ev) {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
  if (S.agentUntil > S.ctx.currentTime) stopAgentAudio("typed", performance.now());
  S.ws.send(JSON.stringify({ type: "text", text }));
  S.userCaption = text; log("user", text);
  $("text").value = "";
}

// --- microphone ---------------------------------------------------------------------------
async function toggleMic() {
  const m = S.mic;
  if (m.on) {
    m.stream.getTracks().forEach((t) => t.stop()); m.node.disconnect(); m.on = false;
  } else {
    m.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false } });
    await S.ctx.audioWorklet.addModule("static/mic-worklet.js");
    const src = S.ctx.createMediaStreamSource(m.stream);
    m.node = new AudioWorkletNode(S.ctx, "mic-capture");
    const sink = S.ctx.createGain(); sink.gain.value = 0;
    src.connect(m.node); m.node.connect(sink); sink.connect(S.ctx.destination);
    m.node.port.onmessage = ({ data }) => onMicBlock(data.samples, data.time);
    m.on = true;
  }
  $("mic").textContent = m.on ? "Microphone on" : "Microphone off";
  $("mic").setAttribute("aria-pressed", String(m.on));
}

function onMicBlock(samples, blockTime) {
  const m = S.mic;
  m.pending.push(samples); m.pendingLen += samples.length;
  if (m.pendingLen >= 960) {  // 40 ms per message, int16 at 24 kHz
    const pcm = new Int16Array(m.pendingLen); let k = 0;
    for (const block of m.pending) for (let i = 0; i < block.length; i++) pcm[k++] = Math.max(-32768, Math.min(32767, Math.round(block[i] * 32767)));
    m.pending = []; m.pendingLen = 0;
    const out = new ArrayBuffer(HEADER_BYTES + pcm.byteLength), dv = new DataView(out);
    dv.setUint8(0, KIND.USER_AUDIO); dv.setUint8(1, 1); dv.setUint16(2, 0, true); dv.setUint32(4, m.seq++, true); dv.setFloat32(8, 0, true);
    new Int16Array(out, HEADER_BYTES).set(pcm);
    if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(out);
  }
  // Local voice activity, as anima/core/vad.py: 20 ms frames, noise floor = quietest frame of the
  // last 1.5 s, voiced 9 dB above it (and above -50 dBFS), 40 ms of speech confirms an onset.
  if (m.frameLen === 0) m.frameStart = blockTime;
  m.frame.push(samples); m.frameLen += samples.length;
  if (m.frameLen < 480) return;
  let energy = 0, n = 0;
  for (const block of m.frame) for (let i = 0; i < block.length; i++) { energy += block[i] * block[i]; n++; }
  const db = 10 * Math.log10(energy / n + 1e-12), start = m.frameStart;
  m.frame = []; m.frameLen = 0;
  S.levels.user = Math.min(1, Math.max(0, (db + 50) / 40));
  m.levels.push(db); if (m.levels.length > 75) m.levels.shift();
  const voiced = db > -50 && db > Math.min(...m.levels) + 9;
  if (voiced) {
    if (m.run === 0) m.runStartCtx = start;
    m.run++; m.silent = 0;
    if (!m.speaking && m.run >= 2) {
      m.speaking = true;
      const onsetPerf = performance.now() - (S.ctx.currentTime - m.runStartCtx) * 1000;
      if (S.agentUntil > S.ctx.currentTime) stopAgentAudio("local", onsetPerf);
    }
  } else {
    m.run = 0; m.silent++;
    if (m.speaking && m.silent >= 10) m.speaking = false;
  }
}

// --- drawing on the audio clock ------------------------------------------------------------
function captionAt(now) {
  if (S.userSpeaking) return { text: S.userCaption, speaker: "user" };
  const heard = S.words.filter((x) => x.t + S.offset <= now && !(S.playingTurn !== null && S.cancelled.has(S.playingTurn) && x.t + S.offset > S.agentUntil));
  if (heard.length && (S.agentState === "speaking" || now - (heard[heard.length - 1].t + S.offset) < 1.5)) {
    return { text: heard.map((x) => x.w).slice(-14).join(" "), speaker: "agent" };
  }
  return { text: S.userCaption, speaker: S.userCaption ? "user" : null };
}

function frame() {
  requestAnimationFrame(frame);
  if (!S.ctx || !S.motion.length) return;
  const now = S.ctx.currentTime;
  while (S.motion.length > 1 && S.motion[1].t <= now) S.motion.shift();
  if (S.motion[0].t <= now) S.current = S.motion[0];
  if (!S.current) return;
  const cap = captionAt(now);
  const agentName = $("character").selectedOptions[0].textContent;
  if (S.agentUntil <= now) S.levels.agent *= 0.8;
  Avatar.draw($("avatar"), S.current.face, S.current.joints, {
    time: S.current.pts, state: S.agentState, caption: cap.text, speaker: S.userSpeaking ? "user" : (S.agentUntil > now ? "agent" : cap.speaker),
    agentName, userName: "You", agentLevel: S.levels.agent, userLevel: S.mic.on ? S.levels.user : 0,
  });
}

$("connect").addEventListener("click", connect);
$("forget").addEventListener("click", () => {
  if (S.ws && S.ws.readyState === WebSocket.OPEN && confirm("Delete everything the character remembers about you?")) {
    S.ws.send(JSON.stringify({ type: "forget" }));
  }
});
$("end").addEventListener("click", () => { $("end").disabled = true; $("rating").hidden = false; });
for (const button of document.querySelectorAll("#rating [data-rating]")) {
  button.addEventListener("click", () => {
    if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify({ type: "rate", rating: Number(button.dataset.rating) }));
  });
}
$("rating-skip").addEventListener("click", () => { $("rating").hidden = true; if (S.ws) S.ws.close(); });
$("say").addEventListener("submit", sendText);
$("mic").addEventListener("click", () => toggleMic().catch((e) => log("system", "microphone: " + e.message)));
requestAnimationFrame(frame);
